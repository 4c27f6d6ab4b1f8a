//! Lists the free-places page's languages: every `src/page/lang/CODE.json` is one, so a third
//! language is a file (src/page.rs checks that each has exactly English's keys and placeholders).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/page/lang");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut langs = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("src/page/lang must exist") {
        let path = entry.expect("reading src/page/lang").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let code = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let ok = (2..=3).contains(&code.split('-').next().unwrap_or_default().len())
            && code.chars().all(|c| c.is_ascii_lowercase() || c == '-');
        assert!(
            ok,
            "src/page/lang/{code}.json: name a language file by its lower-case BCP 47 code (nl.json, pt-br.json)"
        );
        println!("cargo:rerun-if-changed={}", path.display());
        langs.push((code, path));
    }
    langs.sort();
    let mut out = String::from(
        "/// The page's languages: (code, the JSON string table).\npub const LANGS: &[(&str, &str)] = &[\n",
    );
    for (code, path) in &langs {
        writeln!(
            out,
            "    ({code:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let target =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("page_langs.rs");
    std::fs::write(target, out).expect("writing page_langs.rs");
}
