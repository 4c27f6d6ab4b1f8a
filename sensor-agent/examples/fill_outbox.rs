//! Fills an outbox with N line messages, as a long outage would (for the footprint benchmark).
//! `cargo run --release -p tellijn-agent --example fill_outbox -- DIR SENSOR N`

use chrono::{TimeDelta, Utc};
use tellijn_agent::outbox::Outbox;
use tellijn_wire::{CountMessage, LineCount};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, sensor, n] = args.as_slice() else {
        return Err("usage: fill_outbox DIR SENSOR N".into());
    };
    let n: u64 = n.parse()?;
    let mut ob = Outbox::open(std::path::Path::new(dir), 100 << 20)?;
    let t0 = Utc::now() - TimeDelta::seconds(n as i64);
    let mut batch = Vec::with_capacity(1000);
    while ob.next_seq() <= n {
        batch.clear();
        let first = ob.next_seq();
        for seq in first..(first + 1000).min(n + 1) {
            let start = t0 + TimeDelta::seconds(seq as i64);
            batch.push(CountMessage::Line(LineCount {
                sensor: sensor.clone(),
                line: "main".into(),
                seq,
                start,
                end: start + TimeDelta::seconds(1),
                people_in: 1,
                people_out: 1,
            }));
        }
        ob.append(&batch)?;
    }
    println!(
        "outbox {dir}: {} messages, {} bytes",
        ob.depth(),
        ob.bytes()
    );
    Ok(())
}
