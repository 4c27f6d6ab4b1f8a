//! The transparency report as an HTML page (`/transparency`): the same content as the
//! Markdown of `tellijn transparency`, rendered from it with the few forms the report uses
//! (`#` and `##` headings, paragraphs, `- ` lists, `|` tables, `` `code` ``). Every piece of
//! text is HTML-escaped before any tag is added, so a config string (a user's name, a
//! sensor's reported version) can never become markup. One file, no external assets, readable
//! on a phone (wide tables scroll sideways inside their box).

use std::fmt::Write;

/// `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line's text: escaped, with `` `code` `` spans as `<code>`.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

fn cells(row: &str) -> Vec<&str> {
    let row = row.trim();
    let row = row.strip_prefix('|').unwrap_or(row);
    let row = row.strip_suffix('|').unwrap_or(row);
    row.split('|').map(str::trim).collect()
}

fn is_separator(row: &str) -> bool {
    cells(row)
        .iter()
        .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')))
}

/// The body of the page, from the report's Markdown.
pub fn body(markdown: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = markdown.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() {
            i += 1;
        } else if let Some(h) = line.strip_prefix("## ") {
            let _ = writeln!(out, "<h2>{}</h2>", inline(h));
            i += 1;
        } else if let Some(h) = line.strip_prefix("# ") {
            let _ = writeln!(out, "<h1>{}</h1>", inline(h));
            i += 1;
        } else if line.starts_with("- ") {
            out.push_str("<ul>\n");
            while i < lines.len() && lines[i].starts_with("- ") {
                let _ = writeln!(out, "<li>{}</li>", inline(&lines[i][2..]));
                i += 1;
            }
            out.push_str("</ul>\n");
        } else if line.starts_with('|') {
            out.push_str("<div class=\"table\"><table>\n");
            let mut first = true;
            while i < lines.len() && lines[i].starts_with('|') {
                let row = lines[i];
                i += 1;
                if is_separator(row) {
                    continue;
                }
                let tag = if first { "th" } else { "td" };
                out.push_str("<tr>");
                for c in cells(row) {
                    let _ = write!(out, "<{tag}>{}</{tag}>", inline(c));
                }
                out.push_str("</tr>\n");
                first = false;
            }
            out.push_str("</table></div>\n");
        } else {
            let mut para = Vec::new();
            while i < lines.len() {
                let l = lines[i];
                if l.trim().is_empty()
                    || l.starts_with('#')
                    || l.starts_with("- ")
                    || l.starts_with('|')
                {
                    break;
                }
                para.push(inline(l.trim()));
                i += 1;
            }
            let _ = writeln!(out, "<p>{}</p>", para.join(" "));
        }
    }
    out
}

const STYLE: &str = "\
:root{color-scheme:light dark}\
body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;overflow-wrap:break-word}\
h1{font-size:1.45rem;margin:0 0 .5rem}\
h2{font-size:1.15rem;margin:1.5rem 0 .5rem;border-bottom:1px solid GrayText}\
ul{padding-left:1.2rem}li{margin:.25rem 0}\
code{font:.9em ui-monospace,monospace;background:color-mix(in srgb,GrayText 15%,transparent);padding:0 .2em;border-radius:.2em;overflow-wrap:anywhere}\
.table{overflow-x:auto;margin:.5rem 0}\
table{border-collapse:collapse;font-size:.9rem}\
th,td{border:1px solid GrayText;padding:.3rem .5rem;text-align:left;vertical-align:top}\
th{background:color-mix(in srgb,GrayText 15%,transparent)}";

/// The whole page.
pub fn page(markdown: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Tellijn transparency report</title><style>{STYLE}</style></head><body>\n{}</body></html>\n",
        body(markdown)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_renders_as_html() {
        let md = "# Report\n\nGenerated now (SHA `ab<c>`).\n\n## Who\n\n- User `<script>alert(1)</script>` — steward.\n- Everyone: the page.\n\n| a | b |\n|---|---|\n| x & y | `z` |\n";
        let b = body(md);
        assert_eq!(
            b,
            "<h1>Report</h1>\n<p>Generated now (SHA <code>ab&lt;c&gt;</code>).</p>\n<h2>Who</h2>\n<ul>\n<li>User <code>&lt;script&gt;alert(1)&lt;/script&gt;</code> — steward.</li>\n<li>Everyone: the page.</li>\n</ul>\n<div class=\"table\"><table>\n<tr><th>a</th><th>b</th></tr>\n<tr><td>x &amp; y</td><td><code>z</code></td></tr>\n</table></div>\n"
        );
        let p = page(md);
        assert!(p.starts_with("<!doctype html>"));
        for needle in ["http://", "https://", "<script", "@import", "src="] {
            assert!(!p.contains(needle), "{needle} in the page");
        }
    }
}
