//! The free-places page at `/`: one HTML file, its string tables and its service worker.
//!
//! Every string the page shows comes from `src/page/lang/CODE.json` (English is the reference:
//! every other file has exactly its keys and, in each string, the same `{placeholders}`). The
//! tables are put into the page when it is first served, so it needs no second request and
//! works offline once loaded (`sw.js` keeps the page and the last public numbers).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

include!(concat!(env!("OUT_DIR"), "/page_langs.rs"));

const TEMPLATE: &str = include_str!("page/index.html");
const MARKER: &str = "/*TELLIJN_STRINGS*/{\"en\": {}}";

/// The service worker (`/sw.js`).
pub const SERVICE_WORKER: &str = include_str!("page/sw.js");

/// The page as served: the template with every language's strings in it.
pub fn html() -> &'static str {
    static PAGE: LazyLock<String> = LazyLock::new(|| {
        let mut all = serde_json::Map::new();
        for (code, text) in LANGS {
            // A file that is not a JSON object of strings is refused by the tests; here it is
            // left out rather than take the page down.
            if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(text) {
                all.insert((*code).to_owned(), v);
            }
        }
        // Inside <script>, "</" could end the element: JSON allows "<\/" for it.
        let json = serde_json::Value::Object(all)
            .to_string()
            .replace("</", "<\\/");
        TEMPLATE.replacen(MARKER, &json, 1)
    });
    &PAGE
}

/// A language's table: key → string.
fn table(code: &str, text: &str) -> Result<BTreeMap<String, String>, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("src/page/lang/{code}.json is not an object of strings: {e}"))
}

/// The `{placeholders}` of a string.
fn placeholders(s: &str) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        out.insert(&after[..close]);
        rest = &after[close + 1..];
    }
    out
}

/// Every way a language file differs from English: missing or extra keys, other placeholders.
pub fn check_languages(langs: &[(&str, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some((_, en)) = langs.iter().find(|(c, _)| *c == "en") else {
        return vec!["src/page/lang/en.json is missing".into()];
    };
    let en = match table("en", en) {
        Ok(t) => t,
        Err(e) => return vec![e],
    };
    for (code, text) in langs {
        let t = match table(code, text) {
            Ok(t) => t,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        for (k, v) in &en {
            match t.get(k) {
                None => problems.push(format!("src/page/lang/{code}.json: no \"{k}\"")),
                Some(s) if placeholders(s) != placeholders(v) => problems.push(format!(
                    "src/page/lang/{code}.json: \"{k}\" has placeholders {:?}, English {:?}",
                    placeholders(s),
                    placeholders(v)
                )),
                Some(_) => {}
            }
        }
        for k in t.keys().filter(|k| !en.contains_key(*k)) {
            problems.push(format!(
                "src/page/lang/{code}.json: \"{k}\" is not a key of en.json"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_englishs_keys_and_placeholders() {
        assert!(
            LANGS.len() >= 2,
            "{:?}",
            LANGS.iter().map(|l| l.0).collect::<Vec<_>>()
        );
        assert_eq!(check_languages(LANGS), Vec::<String>::new());
    }

    #[test]
    fn the_check_finds_a_missing_key_and_a_lost_placeholder() {
        let en = table("en", LANGS.iter().find(|l| l.0 == "en").unwrap().1).unwrap();
        assert!(placeholders(&en["band"]).contains("n"));
        assert_eq!(
            placeholders("{o} of {c} places, {o}"),
            BTreeSet::from(["c", "o"])
        );
        assert_eq!(placeholders("no {brace"), BTreeSet::new());
        let en = r#"{"free": "{n} free", "title": "Free"}"#;
        let found = check_languages(&[
            ("en", en),
            ("nl", r#"{"free": "{m} vrij", "extra": "x"}"#),
            ("de", "[1]"),
        ]);
        assert_eq!(
            found,
            vec![
                "src/page/lang/nl.json: \"free\" has placeholders {\"m\"}, English {\"n\"}",
                "src/page/lang/nl.json: no \"title\"",
                "src/page/lang/nl.json: \"extra\" is not a key of en.json",
                "src/page/lang/de.json is not an object of strings: invalid type: sequence, expected a map at line 1 column 0",
            ]
        );
    }

    #[test]
    fn the_served_page_carries_every_language_and_stays_small() {
        let page = html();
        assert!(!page.contains(MARKER), "the strings were not put in");
        for (code, _) in LANGS {
            assert!(page.contains(&format!("\"{code}\":{{")), "{code} missing");
        }
        assert!(page.contains("Vrije studieplekken"));
        // Small enough for a phone on a poor connection: the page with its strings.
        assert!(page.len() < 40_000, "{} bytes", page.len());
        // No string can end the script element it is in.
        let script = page.split("<script>").nth(1).unwrap();
        assert_eq!(script.matches("</script>").count(), 1);
    }
}
