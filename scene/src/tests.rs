//! Whole scenes: stream layout, determinism, truth per scenario.

use super::*;
use crate::person::Clothes;
use crate::truth::passage;

fn spec(scenario: Scenario, length: Length, seed: u64) -> SceneSpec {
    SceneSpec {
        scenario,
        length,
        seed,
        ..SceneSpec::default()
    }
}

fn bytes(spec: &SceneSpec) -> (Vec<u8>, Truth) {
    let mut out = Vec::new();
    let truth = render(spec, &mut out).unwrap();
    (out, truth)
}

#[test]
fn stream_has_the_header_and_exact_frame_sizes() {
    let s = SceneSpec {
        width: 160,
        height: 120,
        person_size: 20,
        ..spec(Scenario::Single, Length::Seconds(2), 1)
    };
    let (out, truth) = bytes(&s);
    let header = b"YUV4MPEG2 W160 H120 F15:1 Ip A1:1 C420jpeg\n";
    assert_eq!(&out[..header.len()], header);
    assert_eq!(truth.frames, 30);
    let frame = 6 + 160 * 120 + 2 * 80 * 60;
    assert_eq!(out.len(), header.len() + 30 * frame);
    for f in 0..30 {
        let at = header.len() + f * frame;
        assert_eq!(&out[at..at + 6], b"FRAME\n", "frame {f}");
        assert!(
            out[at + 6 + 160 * 120..at + frame]
                .iter()
                .all(|&c| c == 128)
        );
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = bytes(&spec(Scenario::Mixed, Length::Seconds(4), 7));
    let b = bytes(&spec(Scenario::Mixed, Length::Seconds(4), 7));
    let c = bytes(&spec(Scenario::Mixed, Length::Seconds(4), 8));
    assert!(a.0 == b.0 && a.1 == b.1);
    assert_eq!(a.0.len(), c.0.len());
    assert!(a.0 != c.0);
}

#[test]
fn single_file_people_each_cross_once() {
    for seed in 0..5 {
        let scene = Scene::generate(&spec(Scenario::Single, Length::People(12), seed)).unwrap();
        let t = scene.truth();
        assert_eq!(t.people, 12);
        assert_eq!(t.ins + t.out, 12, "seed {seed}");
        assert!(t.ins > 0 && t.out > 0, "seed {seed}: one direction only");
        assert_eq!(t.frames % 15, 0);
        // One person at a time: nobody enters before the previous one has left.
        let tr = scene.tracks();
        assert!(tr.windows(2).all(|w| w[1].start >= w[0].end()));
    }
}

#[test]
fn seconds_fit_whole_passages_only() {
    let t = Scene::generate(&spec(Scenario::Single, Length::Seconds(30), 2)).unwrap();
    assert_eq!(t.frames(), 450);
    assert!(t.tracks().iter().all(|tr| tr.end() <= 450));
    assert!(t.truth().people >= 3);
}

#[test]
fn turnback_has_people_without_crossings() {
    let scene = Scene::generate(&spec(Scenario::Turnback, Length::People(30), 3)).unwrap();
    let line = scene.spec().line_y();
    let (mut back, mut through) = (0, 0);
    for tr in scene.tracks() {
        match passage(tr, line) {
            None => {
                back += 1;
                // They did reach the line: within an eighth of a width of it.
                let nearest = tr
                    .poses
                    .iter()
                    .map(|p| (p.y - line).abs())
                    .fold(f32::MAX, f32::min);
                assert!(
                    nearest < 0.15 * tr.look.size,
                    "turned back {nearest} px away"
                );
            }
            Some(_) => through += 1,
        }
    }
    assert!(
        back >= 5 && through >= 5,
        "{back} turned back, {through} went through"
    );
    assert_eq!(scene.truth().crossings.len(), through);
}

#[test]
fn groups_walk_abreast() {
    let scene = Scene::generate(&spec(Scenario::Groups, Length::People(20), 4)).unwrap();
    let t = scene.truth();
    assert_eq!(t.ins + t.out, 20);
    // Some crossings of different people fall within a few frames of each other.
    let close = t
        .crossings
        .windows(2)
        .filter(|w| w[1].frame - w[0].frame <= 3)
        .count();
    assert!(close >= 5, "only {close} near-simultaneous crossings");
}

#[test]
fn counterflow_passes_both_ways_at_once() {
    let scene = Scene::generate(&spec(Scenario::Counterflow, Length::People(20), 5)).unwrap();
    let t = scene.truth();
    assert_eq!(t.ins + t.out, 20);
    let opposite_close = t
        .crossings
        .windows(2)
        .filter(|w| w[0].dir != w[1].dir && w[1].frame - w[0].frame <= 10)
        .count();
    assert!(opposite_close >= 4, "only {opposite_close} encounters");
}

#[test]
fn empty_has_no_crossings() {
    let t = render(
        &spec(Scenario::Empty, Length::Seconds(3), 9),
        std::io::sink(),
    )
    .unwrap();
    assert!(t.crossings.is_empty() && t.ins == 0 && t.out == 0 && t.people == 0);
}

#[test]
fn mixed_has_floor_coloured_people() {
    let scene = Scene::generate(&spec(Scenario::Mixed, Length::People(60), 6)).unwrap();
    let n = scene
        .tracks()
        .iter()
        .filter(|t| t.look.clothes == Clothes::FloorColoured)
        .count();
    assert!(n >= 3, "only {n} floor-coloured people");
    let sizes: Vec<f32> = scene.tracks().iter().map(|t| t.look.size).collect();
    assert!(sizes.iter().all(|&s| (34.0..=46.0).contains(&s)));
}

#[test]
fn a_person_changes_the_pixels_they_stand_on() {
    // Render frames with and without the people: where a centre is, the luma differs.
    let s = spec(Scenario::Single, Length::People(1), 10);
    let scene = Scene::generate(&s).unwrap();
    let tr = &scene.tracks()[0];
    let mid = tr.start + tr.poses.len() as u64 / 2;
    let p = tr.poses[tr.poses.len() / 2];
    let (mut with, mut without) = (vec![0; 320 * 240], vec![0; 320 * 240]);
    scene_compose(&scene, mid, &[0], &mut with);
    scene_compose(&scene, mid, &[], &mut without);
    let at = p.y as usize * 320 + p.x as usize;
    assert!(with[at].abs_diff(without[at]) >= 15, "head not visible");
}

fn scene_compose(scene: &Scene, n: u64, active: &[usize], work: &mut [u8]) {
    scene.compose_for_test(n, active, work);
}

#[test]
fn truth_json_has_the_documented_fields() {
    let s = SceneSpec {
        zone: true,
        ..spec(Scenario::Single, Length::People(2), 11)
    };
    let t = Scene::generate(&s).unwrap().truth();
    let v: serde_json::Value = serde_json::to_value(&t).unwrap();
    for key in [
        "width",
        "height",
        "fps",
        "frames",
        "person_size",
        "scenario",
        "seed",
    ] {
        assert!(v.get(key).is_some(), "{key} missing");
    }
    assert_eq!(v["in"].as_u64().unwrap() + v["out"].as_u64().unwrap(), 2);
    assert_eq!(v["crossings"][0]["line"], "main");
    assert_eq!(v["zone"]["name"], "door");
    let seconds = v["zone"]["per_second"].as_array().unwrap();
    assert_eq!(seconds.len() as u64, t.frames / 15);
    // Whoever walks in or out passes through the bottom quarter for a second or so.
    assert!(seconds.iter().any(|s| s.as_u64() == Some(1)));
    let back: Truth = serde_json::from_value(v).unwrap();
    assert_eq!(back, t);
    // Without a zone the key is absent.
    let t = Scene::generate(&spec(Scenario::Single, Length::People(1), 11))
        .unwrap()
        .truth();
    assert!(serde_json::to_value(&t).unwrap().get("zone").is_none());
}
