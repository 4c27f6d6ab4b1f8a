//! The free-places page as people use it, in headless Chromium against a running demo: Dutch
//! and English, WCAG 2.1 AA by axe-core, the building filter and the search, the campus screen
//! at 1920×1080, and the page offline once loaded. Never an office, never a small number.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::chromium::Chromium;
use crate::common::http_get;

/// A demo mid-morning (rooms in use, some nearly empty, lecture halls open as study places
/// between lectures); its API address.
async fn demo(data: &Path, sensors: u32) -> (tokio::process::Child, SocketAddr) {
    let sensors = sensors.to_string();
    let args = ["--sensors", &sensors, "--speed", "60", "--start", "10:00"];
    let (child, printed) = crate::common::demo(data, &args).await;
    let api = printed
        .iter()
        .find_map(|l| l.strip_prefix("API        http://"))
        .and_then(|rest| rest.split('/').next())
        .map(|a| a.parse::<SocketAddr>().unwrap());
    (child, api.expect("the demo printed no API address"))
}

/// axe-core from npm, as `.ci/test --install-only` installs it.
fn axe_source() -> String {
    let path = std::env::var_os("AXE_CORE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/test-tools/npm/node_modules/axe-core/axe.min.js")
        });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; `bash .ci/test --install-only` installs axe-core (npm), or set AXE_CORE_JS",
            path.display()
        )
    })
}

/// The anonymous API's rooms: what the page may show.
async fn public_rooms(http: SocketAddr) -> Vec<Value> {
    let body = http_get(http, "/api/v1/rooms").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    v.as_array().unwrap().clone()
}

/// axe-core's WCAG 2.1 A/AA and best-practice findings on the page as shown: (rule, impact,
/// elements, first targets).
async fn axe(cdp: &mut Chromium, source: &str) -> Vec<Value> {
    cdp.eval(source).await;
    let found = cdp
        .eval_async(
            "axe.run(document, {runOnly: {type: 'tag', values: \
             ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}}) \
             .then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact, \
             help: v.help, nodes: v.nodes.length, targets: v.nodes.slice(0, 3).map(n => n.target)}))))",
        )
        .await;
    serde_json::from_str(found.as_str().unwrap()).unwrap()
}

/// What the page shows now: room id → (its "free" text, its people text).
async fn shown(cdp: &mut Chromium) -> BTreeMap<String, (String, String)> {
    let v = cdp
        .eval(
            "JSON.stringify([...document.querySelectorAll('[data-room]')].map(e => \
             [e.dataset.room, e.querySelector('.free').textContent, e.querySelector('.people').textContent]))",
        )
        .await;
    let rows: Vec<(String, String, String)> = serde_json::from_str(v.as_str().unwrap()).unwrap();
    rows.into_iter().map(|(id, f, p)| (id, (f, p))).collect()
}

/// Every room shown is public and not an office, and every exact number is at least the band.
fn nothing_private(shown: &BTreeMap<String, (String, String)>, rooms: &[Value]) {
    let allowed: BTreeSet<&str> = rooms
        .iter()
        .filter(|r| r["public"] == true && r["kind"] != "office")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for (id, (_, people)) in shown {
        assert!(
            allowed.contains(id.as_str()),
            "{id} is not a public non-office room"
        );
        let taken: Option<u64> = people.split(' ').next().and_then(|n| n.parse().ok());
        if let Some(n) = taken {
            assert!(n >= 5, "{id}: an exact small number: {people}");
        }
    }
}

async fn wait_rendered(cdp: &mut Chromium, updates: u32) {
    let ok = cdp
        .wait(
            60,
            &format!("Number(document.body.dataset.updates) >= {updates} && document.querySelectorAll('[data-room]').length > 0"),
        )
        .await;
    assert_eq!(ok, true, "the page showed no rooms");
}

fn serious(found: &[Value]) -> Vec<&Value> {
    found
        .iter()
        .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_in_dutch_and_english_passes_axe_and_filters_by_building_and_search() {
    tokio::time::timeout(Duration::from_secs(300), page_for_everyone())
        .await
        .expect("the page test took over 5 minutes");
}

async fn page_for_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, http) = demo(&dir.path().join("data"), 60).await;
    let source = axe_source();
    let rooms = public_rooms(http).await;
    let mut cdp = Chromium::start(390, 844).await;
    cdp.viewport(390, 844, true).await;
    // A Dutch phone: the page answers in Dutch without being asked.
    cdp.languages("nl-NL,nl;q=0.9,en;q=0.5").await;
    cdp.open(&format!("http://{http}/")).await;
    wait_rendered(&mut cdp, 1).await;
    assert_eq!(cdp.eval("document.documentElement.lang").await, "nl");
    assert_eq!(
        cdp.eval("document.querySelector('h1').textContent").await,
        "Vrije studieplekken"
    );
    let dutch = shown(&mut cdp).await;
    nothing_private(&dutch, &rooms);
    assert!(
        dutch.values().all(|(free, _)| free.ends_with(" vrij")),
        "{dutch:?}"
    );
    let png = cdp.screenshot().await;
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("free-places-nl.png"),
        png,
    )
    .unwrap();

    // WCAG 2.1 AA in both languages, light and dark, phone and desktop: nothing serious or
    // critical, and every WCAG rule passes (best practice may note minor things).
    for (width, height, mobile) in [(390, 844, true), (1280, 800, false)] {
        cdp.viewport(width, height, mobile).await;
        for dark in [false, true] {
            cdp.dark(dark).await;
            for lang in ["nl", "en"] {
                cdp.eval(&format!(
                    "(() => {{ const s = document.getElementById('f-lang'); s.value = '{lang}'; \
                     s.dispatchEvent(new Event('change')); return true; }})()"
                ))
                .await;
                let found = axe(&mut cdp, &source).await;
                let at = format!("{lang}, {width}px, dark {dark}");
                assert!(serious(&found).is_empty(), "{at}: {found:#?}");
                assert!(found.is_empty(), "{at}: {found:#?}");
            }
        }
    }
    cdp.dark(false).await;
    cdp.viewport(390, 844, true).await;

    // The switch's choice outlives a reload; the page is English now.
    cdp.call("Page.reload", serde_json::json!({})).await;
    wait_rendered(&mut cdp, 1).await;
    assert_eq!(cdp.eval("document.documentElement.lang").await, "en");
    assert_eq!(
        cdp.eval("document.querySelector('h1').textContent").await,
        "Free study places"
    );

    // The building filter: only that building's rooms, and the choice is in the address.
    let by_room: BTreeMap<String, String> = rooms
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["building"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let buildings: Vec<String> = serde_json::from_str(
        cdp.eval("JSON.stringify([...document.querySelectorAll('#f-building option')].map(o => o.value))")
            .await
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(buildings.len() >= 3, "{buildings:?}");
    assert_eq!(buildings[0], "", "the first choice is every building");
    let pick = &buildings[2];
    cdp.eval(&format!(
        "(() => {{ const s = document.getElementById('f-building'); s.value = '{pick}'; \
         s.dispatchEvent(new Event('change')); return true; }})()"
    ))
    .await;
    let only = shown(&mut cdp).await;
    assert!(!only.is_empty());
    assert!(
        only.keys().all(|id| &by_room[id] == pick),
        "{pick}: {only:?}"
    );
    assert_eq!(
        cdp.eval("location.search").await,
        format!("?building={pick}")
    );
    // It survives the next refresh.
    let n: u32 = cdp
        .eval("Number(document.body.dataset.updates)")
        .await
        .as_u64()
        .unwrap() as u32;
    wait_rendered(&mut cdp, n + 1).await;
    assert!(shown(&mut cdp).await.keys().all(|id| &by_room[id] == pick));

    // The search, over every building: one room by part of its name, case and accents aside.
    cdp.eval(
        "(() => { const s = document.getElementById('f-building'); s.value = ''; \
         s.dispatchEvent(new Event('change')); return true; })()",
    )
    .await;
    let all = shown(&mut cdp).await;
    let target = rooms
        .iter()
        .find(|r| all.contains_key(r["id"].as_str().unwrap()))
        .unwrap();
    let name = target["name"].as_str().unwrap();
    let part = name.to_uppercase();
    let search = |q: &str| {
        format!(
            "(() => {{ const s = document.getElementById('f-search'); s.value = {q:?}; \
             s.dispatchEvent(new Event('input')); return true; }})()"
        )
    };
    cdp.eval(&search(&part)).await;
    let found = shown(&mut cdp).await;
    assert!(
        found.contains_key(target["id"].as_str().unwrap()),
        "{part}: {found:?}"
    );
    assert!(found.len() < all.len(), "the search did not narrow");
    cdp.eval(&search("no such room, ever")).await;
    assert!(shown(&mut cdp).await.is_empty());
    assert_eq!(
        cdp.eval("document.getElementById('buildings').innerText")
            .await,
        "No room matches “no such room, ever”."
    );
    // Keyboard: Tab reaches every control, in reading order.
    cdp.eval("document.activeElement.blur(); window.scrollTo(0, 0); true")
        .await;
    let mut order = Vec::new();
    for _ in 0..4 {
        for kind in ["keyDown", "keyUp"] {
            cdp.call(
                "Input.dispatchKeyEvent",
                serde_json::json!({"type": kind, "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9}),
            )
            .await;
        }
        order.push(cdp.eval("document.activeElement.id").await);
    }
    assert_eq!(
        order,
        ["f-building", "f-search", "f-lang", "hc-summary"]
            .map(Value::from)
            .to_vec(),
        "the Tab order"
    );
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_campus_screen_shows_one_building_large_at_1920x1080() {
    tokio::time::timeout(Duration::from_secs(240), campus_screen())
        .await
        .expect("the campus-screen test took over 4 minutes");
}

async fn campus_screen() {
    let dir = tempfile::tempdir().unwrap();
    // Enough sensors for a building with many rooms: the screen must fit them all.
    let (mut child, http) = demo(&dir.path().join("data"), 370).await;
    let rooms = public_rooms(http).await;
    // The building with the most rooms on show: the hardest to fit.
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for r in rooms
        .iter()
        .filter(|r| r["public"] == true && r["kind"] != "office")
    {
        *per.entry(r["building"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let (building, count) = per.iter().max_by_key(|(_, n)| **n).unwrap();
    let buildings: Value =
        serde_json::from_str(&http_get(http, "/api/v1/buildings").await).unwrap();
    let name = buildings
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == building.as_str())
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut cdp = Chromium::start(1920, 1080).await;
    cdp.viewport(1920, 1080, false).await;
    cdp.languages("en").await;
    cdp.open(&format!("http://{http}/?screen={building}")).await;
    wait_rendered(&mut cdp, 1).await;
    let facts: Value = serde_json::from_str(
        cdp.eval(
            "JSON.stringify({title: document.querySelector('h1').textContent, \
             controls: document.querySelectorAll('input, select, button, details, summary, form').length, \
             scrollHeight: document.documentElement.scrollHeight, scrollWidth: document.documentElement.scrollWidth, \
             freePx: parseFloat(getComputedStyle(document.querySelector('.free')).fontSize), \
             namePx: parseFloat(getComputedStyle(document.querySelector('.name')).fontSize), \
             cursor: getComputedStyle(document.body).cursor, \
             cut: [...document.querySelectorAll('.free')].filter(e => e.scrollWidth > e.clientWidth).length})",
        )
        .await
        .as_str()
        .unwrap(),
    )
    .unwrap();
    // The screen as shown, for people to look at (target/tmp/campus-screen.png).
    let png = cdp.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1920, 1080));
    let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("campus-screen.png");
    std::fs::write(&artifact, &png).unwrap();
    assert_eq!(facts["title"], format!("Free places · {name}"));
    assert_eq!(
        facts["controls"], 0,
        "nothing to press on a screen: {facts}"
    );
    assert_eq!(facts["cursor"], "none");
    assert_eq!(facts["cut"], 0, "a number is cut off: {facts}");
    assert!(
        facts["scrollHeight"].as_f64().unwrap() <= 1080.0
            && facts["scrollWidth"].as_f64().unwrap() <= 1920.0,
        "{count} rooms do not fit: {facts}"
    );
    // Large type even for 25 rooms (a phone shows 16px names and 21px numbers).
    assert!(facts["namePx"].as_f64().unwrap() >= 18.0, "{facts}");
    assert!(facts["freePx"].as_f64().unwrap() >= 24.0, "{facts}");
    eprintln!("campus screen: {count} rooms of {building}: {facts}");
    let on_screen = shown(&mut cdp).await;
    assert_eq!(on_screen.len(), *count, "every room of {building} on show");
    let by_room: BTreeMap<&str, &str> = rooms
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["building"].as_str().unwrap()))
        .collect();
    assert!(on_screen.keys().all(|id| by_room[id.as_str()] == building));
    nothing_private(&on_screen, &rooms);
    let found = axe(&mut cdp, &axe_source()).await;
    assert!(serious(&found).is_empty(), "{found:#?}");

    // It refreshes by itself.
    wait_rendered(&mut cdp, 3).await;
    // An unknown building says so, and shows no rooms.
    cdp.open(&format!("http://{http}/?screen=nowhere")).await;
    let text = cdp
        .wait(30, "Number(document.body.dataset.updates) >= 1 && document.getElementById('buildings').innerText")
        .await;
    assert_eq!(text, "There is no public building “nowhere”.");
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_works_offline_once_loaded() {
    tokio::time::timeout(Duration::from_secs(180), offline())
        .await
        .expect("the offline test took over 3 minutes");
}

async fn offline() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, http) = demo(&dir.path().join("data"), 60).await;
    let mut cdp = Chromium::start(390, 844).await;
    cdp.languages("en").await;
    cdp.open(&format!("http://{http}/")).await;
    wait_rendered(&mut cdp, 1).await;
    // The service worker controls the page and has seen the numbers at least once since.
    let controlled = cdp
        .wait(30, "navigator.serviceWorker.controller !== null")
        .await;
    assert_eq!(controlled, true, "no service worker took the page");
    let n = cdp
        .eval("Number(document.body.dataset.updates)")
        .await
        .as_u64()
        .unwrap();
    wait_rendered(&mut cdp, n as u32 + 1).await;
    let before = shown(&mut cdp).await;
    let kept = cdp
        .eval_async("caches.open('tellijn-page-v1').then(c => c.keys()).then(k => k.map(r => new URL(r.url).pathname).sort().join(','))")
        .await;
    assert_eq!(kept, "/,/api/v1/buildings,/api/v1/rooms");

    // The server goes away; the page is reloaded (a screen's nightly restart, a phone's tab).
    child.kill().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(http).await.is_err(),
        "the server still answers"
    );
    cdp.call("Page.reload", serde_json::json!({})).await;
    let status = cdp
        .wait(
            30,
            "document.getElementById('status').textContent.startsWith('Offline') && document.getElementById('status').textContent",
        )
        .await;
    assert!(
        status
            .as_str()
            .is_some_and(|s| s.starts_with("Offline: these are the numbers of ")),
        "{status}"
    );
    let after = shown(&mut cdp).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
}
