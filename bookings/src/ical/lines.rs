//! A feed's text → its top-level components (`VEVENT`, `VTIMEZONE`), each as its own text.
//!
//! `icalendar`'s parser is all-or-nothing: its `cut`s turn one malformed line anywhere into an
//! error for the whole feed. So the feed is first cut here into its top-level components by
//! their `BEGIN:`/`END:` lines, and each is then parsed by `icalendar` on its own: one broken
//! event costs that event (`skipped["bad_event"]`), not the feed. Lines end in CRLF, LF or a
//! mix; `\r` is dropped so the parser sees LF only (its property values stop at the first
//! `\r\n` if there is one, which a mixed file would otherwise run across lines).

use super::FeedError;

/// Which top-level components are kept.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Event,
    Timezone,
}

/// One top-level component: its kind and its lines (LF-terminated, `\r` dropped, still
/// folded), or `None` if its `BEGIN`/`END` lines do not nest or it is too long (then it is
/// counted as a bad event, never parsed).
pub(crate) struct Block {
    pub kind: Kind,
    pub text: Option<String>,
}

/// Components with more lines than this are refused (a bad event), so one absurd event cannot
/// hold the whole feed's text twice.
const MAX_BLOCK_LINES: usize = 20_000;

/// Components nested deeper than this (a `VEVENT` holds a `VALARM`, a `VTIMEZONE` its
/// `STANDARD` and `DAYLIGHT`: depth 2) are refused as a bad event.
const MAX_DEPTH: usize = 8;

fn begin_end<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    let head = line.get(..tag.len())?;
    head.eq_ignore_ascii_case(tag)
        .then(|| line[tag.len()..].trim())
}

/// Splits `text` into blocks. Errors name line numbers only.
pub(crate) fn split(text: &str) -> Result<Vec<Block>, FeedError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(FeedError::NotICalendar("empty feed".into()));
    }
    let mut blocks = Vec::new();
    let mut in_calendar = false;
    let mut seen_calendar = false;
    let mut closed = false;
    // The open block: kind, first line, text, BEGIN names not yet ENDed, whether broken.
    let mut open: Option<(Kind, usize, String, Vec<String>, bool)> = None;
    let mut last = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.contains('\0') {
            return Err(FeedError::NotICalendar(format!(
                "binary data (a NUL byte) at line {n}"
            )));
        }
        if line.trim().is_empty() {
            continue;
        }
        last = n;
        if !in_calendar {
            if begin_end(line.trim_start(), "BEGIN:")
                .is_some_and(|c| c.eq_ignore_ascii_case("VCALENDAR"))
            {
                in_calendar = true;
                seen_calendar = true;
                closed = false;
            } else if !seen_calendar {
                return Err(FeedError::NotICalendar(format!(
                    "no BEGIN:VCALENDAR at line {n}"
                )));
            }
            // Text after END:VCALENDAR (and before another BEGIN:VCALENDAR) is ignored.
            continue;
        }
        let folded = line.starts_with([' ', '\t']);
        let begin = if folded {
            None
        } else {
            begin_end(line, "BEGIN:")
        };
        let end = if folded {
            None
        } else {
            begin_end(line, "END:")
        };
        match open.as_mut() {
            None => {
                if let Some(name) = begin {
                    let kind = if name.eq_ignore_ascii_case("VEVENT") {
                        Some(Kind::Event)
                    } else if name.eq_ignore_ascii_case("VTIMEZONE") {
                        Some(Kind::Timezone)
                    } else {
                        None
                    };
                    // Other components (VTODO, VJOURNAL, VFREEBUSY, …) are read past too,
                    // by the same nesting, and then dropped.
                    let kind = kind.unwrap_or(Kind::Event);
                    let keep = name.eq_ignore_ascii_case("VEVENT")
                        || name.eq_ignore_ascii_case("VTIMEZONE");
                    let mut t = String::new();
                    if keep {
                        t.push_str(line);
                        t.push('\n');
                    }
                    open = Some((kind, n, t, vec![name.to_ascii_uppercase()], !keep));
                } else if end.is_some_and(|c| c.eq_ignore_ascii_case("VCALENDAR")) {
                    in_calendar = false;
                    closed = true;
                }
                // Calendar properties (VERSION, PRODID, X-WR-*) are not needed.
            }
            Some((kind, start, t, stack, dropped)) => {
                if let Some(name) = begin {
                    let name = name.to_ascii_uppercase();
                    if name == "VEVENT" || name == "VTIMEZONE" || name == "VCALENDAR" {
                        // A top-level component inside another: the one open lacks its END.
                        if !*dropped {
                            blocks.push(Block {
                                kind: *kind,
                                text: None,
                            });
                        }
                        open = None;
                        if name == "VCALENDAR" {
                            continue;
                        }
                        let kind = if name == "VEVENT" {
                            Kind::Event
                        } else {
                            Kind::Timezone
                        };
                        open = Some((kind, n, format!("{line}\n"), vec![name], false));
                        continue;
                    }
                    stack.push(name);
                    if stack.len() > MAX_DEPTH && !*dropped {
                        // icalendar's parser recurses per level: bound it (stack, not time).
                        *dropped = true;
                        *t = String::new();
                        blocks.push(Block {
                            kind: *kind,
                            text: None,
                        });
                    }
                } else if let Some(name) = end {
                    let name = name.to_ascii_uppercase();
                    if name == "VCALENDAR" {
                        // END:VCALENDAR with a component still open.
                        if !*dropped {
                            blocks.push(Block {
                                kind: *kind,
                                text: None,
                            });
                        }
                        open = None;
                        in_calendar = false;
                        closed = true;
                        continue;
                    }
                    if let Some(pos) = stack.iter().rposition(|s| *s == name) {
                        // Any components named after it lack their END: the parser will
                        // refuse the block, which is what it deserves.
                        stack.truncate(pos);
                    }
                }
                if !*dropped {
                    t.push_str(line);
                    t.push('\n');
                    if n - *start > MAX_BLOCK_LINES {
                        *dropped = true;
                        *t = String::new();
                        blocks.push(Block {
                            kind: *kind,
                            text: None,
                        });
                    }
                }
                if stack.is_empty()
                    && let Some((kind, _, t, _, false)) = open.take()
                {
                    blocks.push(Block {
                        kind,
                        text: Some(t),
                    });
                }
            }
        }
    }
    if !seen_calendar {
        return Err(FeedError::NotICalendar("no BEGIN:VCALENDAR".into()));
    }
    if !closed || in_calendar {
        return Err(FeedError::Truncated(last));
    }
    Ok(blocks)
}
