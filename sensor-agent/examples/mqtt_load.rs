//! MQTT load for the benchmarks (`bench/`): many real TCP connections publishing valid count
//! messages at QoS 1, the same against Tellijn and against a peer broker.
//!
//! ```text
//! mqtt_load publish   --port P --clients N --messages M [--inflight K] [--rate R] [--wait-ack]
//! mqtt_load subscribe --port P --expect TOTAL           (the peer's one subscriber)
//! mqtt_load idle      --port P --clients N              (connect and hold, for RSS per connection)
//! ```
//! Client `i` is sensor `bench-{i}` with password `bench-secret`, line `main`. `publish` prints
//! one JSON line: messages, seconds, messages per second; with `--wait-ack` it also waits until
//! every client's `ack` topic covers its last seq (Tellijn: durably stored), and that is the
//! end of the measured time. `--rate R` sends R messages per second per client instead of as
//! fast as acknowledgements allow, and prints send → ack latencies.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

fn message(sensor: &str, seq: u64) -> String {
    let end = chrono::Utc::now();
    let start = end - chrono::TimeDelta::seconds(1);
    let f = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"{{"v":1,"sensor":"{sensor}","line":"main","seq":{seq},"start":"{}","end":"{}","in":1,"out":1}}"#,
        f(start),
        f(end)
    )
}

fn options(id: &str, port: u16, inflight: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(id, "bench-secret");
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(inflight);
    o.set_max_packet_size(4096, 4096);
    o
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let port = arg(&args, "--port", 1883) as u16;
    let offset = arg(&args, "--first", 0);
    match mode {
        "publish" => {
            publish(
                port,
                offset,
                arg(&args, "--clients", 10),
                arg(&args, "--messages", 1000),
                arg(&args, "--inflight", 100) as u16,
                arg(&args, "--rate", 0),
                flag(&args, "--wait-ack"),
            )
            .await
        }
        "subscribe" => subscribe(port, arg(&args, "--expect", 1000)).await,
        "idle" => idle(port, offset, arg(&args, "--clients", 100)).await,
        _ => anyhow::bail!("usage: mqtt_load publish|subscribe|idle --port P …"),
    }
}

async fn publish(
    port: u16,
    offset: u64,
    clients: u64,
    messages: u64,
    inflight: u16,
    rate: u64,
    wait_ack: bool,
) -> anyhow::Result<()> {
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let id = format!("bench-{}", offset + i);
        let (client, mut events) = AsyncClient::new(options(&id, port, inflight), 1024);
        let latencies = latencies.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            if wait_ack {
                client
                    .subscribe(format!("tellijn/v1/sensors/{id}/ack"), QoS::AtLeastOnce)
                    .await?;
            }
            let topic = format!("tellijn/v1/sensors/{id}/counts");
            // Sending starts once the connection is up (and subscribed), so the latencies are
            // those of the steady state, not of the connect storm.
            let (ready, up) = tokio::sync::oneshot::channel::<()>();
            let mut ready = Some(ready);
            let sender = {
                let client = client.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    let _ = up.await;
                    let mut tick =
                        tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
                    let mut sent = Vec::with_capacity(messages as usize);
                    for seq in 1..=messages {
                        if rate > 0 {
                            tick.tick().await;
                        }
                        sent.push(Instant::now());
                        client
                            .publish(&topic, QoS::AtLeastOnce, false, message(&id, seq))
                            .await?;
                    }
                    anyhow::Ok(sent)
                })
            };
            let mut acked = 0u64;
            let mut ack_times = Vec::with_capacity(messages as usize);
            let mut watermark = 0u64;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) if !wait_ack => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked += 1;
                        ack_times.push(Instant::now());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v: serde_json::Value = serde_json::from_slice(&p.payload)?;
                        watermark = v["seq"].as_u64().unwrap_or(0);
                    }
                    Ok(_) => {}
                    Err(e) => anyhow::bail!("{id}: {e}"),
                }
                if acked >= messages && (!wait_ack || watermark >= messages) {
                    break;
                }
            }
            let sent = sender.await??;
            if rate > 0 {
                let mut l = latencies.lock().unwrap_or_else(|e| e.into_inner());
                // PUBACKs come in order per connection.
                l.extend(
                    sent.iter()
                        .zip(&ack_times)
                        .map(|(s, a)| a.duration_since(*s).as_secs_f64() * 1000.0),
                );
            }
            done.fetch_add(acked, Ordering::Relaxed);
            let _ = client.disconnect().await;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    let mut l = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "{{\"messages\":{total},\"seconds\":{secs:.3},\"per_second\":{:.0},\"puback_ms_p50\":{:.2},\"puback_ms_p99\":{:.2},\"puback_ms_max\":{:.2}}}",
        total as f64 / secs,
        pct(0.5),
        pct(0.99),
        l.last().copied().unwrap_or(0.0)
    );
    Ok(())
}

async fn subscribe(port: u16, expect: u64) -> anyhow::Result<()> {
    let mut o = MqttOptions::new("bench-subscriber", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(1000);
    o.set_max_packet_size(4096, 4096);
    let (client, mut events) = AsyncClient::new(o, 1024);
    client
        .subscribe("tellijn/v1/sensors/+/counts", QoS::AtLeastOnce)
        .await?;
    let mut got = 0u64;
    let mut first: Option<Instant> = None;
    loop {
        match events.poll().await? {
            Event::Incoming(Packet::SubAck(_)) => println!("subscribed"),
            Event::Incoming(Packet::Publish(_)) => {
                first.get_or_insert_with(Instant::now);
                got += 1;
                if got >= expect {
                    break;
                }
            }
            _ => {}
        }
    }
    let secs = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
    println!("{{\"received\":{got},\"seconds_from_first\":{secs:.3}}}");
    Ok(())
}

async fn idle(port: u16, offset: u64, clients: u64) -> anyhow::Result<()> {
    let connected = Arc::new(AtomicU64::new(0));
    let mut keep = Vec::new();
    for i in 0..clients {
        let id = format!("bench-{}", offset + i);
        let (client, mut events) = AsyncClient::new(options(&id, port, 10), 10);
        let up = connected.clone();
        keep.push(client);
        tokio::spawn(async move {
            let mut counted = false;
            while let Ok(ev) = events.poll().await {
                if !counted && matches!(ev, Event::Incoming(Packet::ConnAck(_))) {
                    up.fetch_add(1, Ordering::Relaxed);
                    counted = true;
                }
            }
        });
        // Do not storm the door: it admits at most max_pending half-open connections.
        if i % 500 == 499 {
            while connected.load(Ordering::Relaxed) + 1000 < i {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    while connected.load(Ordering::Relaxed) < clients {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{{\"connected\":{clients}}}");
    // Hold until stdin closes (the script measures the server meanwhile).
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
    drop(keep);
    Ok(())
}
