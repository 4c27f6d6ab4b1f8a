//! The retained outputs: room and building occupancy, room state and every sensor's ack,
//! each published only when it changed.

use std::collections::BTreeSet;

use serde::Serialize;
use tellijn_config::AuditEvent;
use tellijn_config::metrics::{BuildingLabels, RoomLabels, SensorLabels};
use tellijn_wire::count::rfc3339;
use tellijn_wire::topic;

use crate::{Output, Processors, hvac};

#[derive(Serialize)]
struct OccupancyPayload<'a> {
    room: &'a str,
    building: &'a str,
    occupancy: u64,
    capacity: u32,
    ts: String,
}

#[derive(Serialize)]
struct BuildingPayload<'a> {
    building: &'a str,
    occupancy: u64,
    capacity: u64,
    ts: String,
}

impl Processors {
    /// Retained topics for every room and building, from the current state: published before
    /// any sensor connects, so subscribers see correct values after a restart.
    pub fn initial_outputs(&mut self) -> Vec<Output> {
        let rooms: BTreeSet<String> = self.campus.rooms.iter().map(|r| r.id.clone()).collect();
        let buildings: BTreeSet<String> =
            self.campus.buildings.iter().map(|b| b.id.clone()).collect();
        let mut out = self.outputs(&rooms, &buildings);
        for o in self.acks(false) {
            self.push_raw_if_changed(&mut out, o.topic, o.payload);
        }
        if self.campus.integrations.home_assistant {
            out.extend(crate::home_assistant::discovery(&self.campus));
        }
        out
    }
    /// Ack outputs for every sensor's watermark (changed or not: the caller publishes those
    /// that changed); with `give_up`, gaps overdue past the horizon are declared lost first.
    pub(crate) fn acks(&mut self, give_up: bool) -> Vec<Output> {
        let now = self.clock.now().timestamp_micros();
        let horizon = if give_up {
            self.gap_horizon.as_micros().min(i64::MAX as u128) as i64
        } else {
            i64::MAX
        };
        let (marks, lost) = self.dedup.watermarks(now, horizon);
        for g in lost {
            let n = g.last - g.first + 1;
            tracing::warn!(
                sensor = %g.sensor,
                why = g.why.as_str(),
                "Seqs {}..={} given up as lost.",
                g.first,
                g.last
            );
            let labels = SensorLabels {
                sensor: g.sensor.clone(),
            };
            self.metrics
                .sensor_seq_lost
                .get_or_create(&labels)
                .inc_by(n);
            let event = AuditEvent::SeqGapLost {
                sensor: g.sensor,
                first: g.first,
                last: g.last,
                why: g.why.as_str(),
            };
            if let Err(e) = self.audit.record(event) {
                tracing::error!("{e}");
            }
        }
        // Every configured sensor has a retained ack, 0 before its first message is stored:
        // an agent waits for it after connecting before it sends, so one whose outbox was
        // replaced learns where the server stands and continues above it.
        let mut marks = marks;
        let known: std::collections::HashSet<&str> =
            marks.iter().map(|(s, _)| s.as_str()).collect();
        let unseen: Vec<(String, u64)> = self
            .campus
            .sensors
            .iter()
            .filter(|s| !known.contains(s.id.as_str()))
            .map(|s| (s.id.clone(), 0))
            .collect();
        marks.extend(unseen);
        marks
            .into_iter()
            .map(|(sensor, seq)| Output {
                topic: topic::sensor(&sensor, topic::SensorTopic::Ack),
                payload: format!("{{\"seq\":{seq}}}").into_bytes(),
            })
            .collect()
    }
    pub(crate) fn outputs(
        &mut self,
        rooms: &BTreeSet<String>,
        buildings: &BTreeSet<String>,
    ) -> Vec<Output> {
        let now = self.clock.now();
        let now_us = now.timestamp_micros();
        let ts = rfc3339(now);
        let instant = tokio::time::Instant::now();
        let mut out = Vec::new();
        let campus = self.campus.clone();
        for room in rooms {
            let Some(r) = self.room_index.get(room).and_then(|&i| campus.rooms.get(i)) else {
                continue;
            };
            let n = self.engine.room(room, now_us);
            self.minutes.set(room, n, now_us);
            let delay = self.clock.real(r.vacancy_delay);
            let state = self
                .vacancy
                .entry(room.clone())
                .or_insert_with(|| hvac::Vacancy::new(n));
            let occupied = state.update(n, instant, delay);
            let state = state.payload();
            let labels = RoomLabels {
                room: r.id.clone(),
                building: r.building.clone(),
            };
            self.metrics
                .room_vacant
                .get_or_create(&labels)
                .set(i64::from(!occupied));
            self.metrics
                .room_occupancy
                .get_or_create(&labels)
                .set(n as i64);
            let payload = OccupancyPayload {
                room,
                building: &r.building,
                occupancy: n,
                capacity: r.capacity,
                ts: ts.clone(),
            };
            self.push_if_changed(&mut out, topic::room_occupancy(room), &payload, n);
            self.push_raw_if_changed(&mut out, topic::room_state(room), state.to_vec());
        }
        for b in buildings {
            let n = self.engine.building(b, now_us);
            self.metrics
                .building_occupancy
                .get_or_create(&BuildingLabels {
                    building: b.clone(),
                })
                .set(n as i64);
            let capacity = self.building_capacity.get(b).copied().unwrap_or(0);
            let payload = BuildingPayload {
                building: b,
                occupancy: n,
                capacity,
                ts: ts.clone(),
            };
            self.push_if_changed(&mut out, topic::building_occupancy(b), &payload, n);
        }
        out
    }

    /// Publishes occupancy payloads only when the number changed (the timestamp alone does not
    /// make a change).
    fn push_if_changed<T: Serialize>(
        &mut self,
        out: &mut Vec<Output>,
        topic: String,
        payload: &T,
        n: u64,
    ) {
        let key = n.to_le_bytes().to_vec();
        if self.published.get(&topic) == Some(&key) {
            return;
        }
        self.published.insert(topic.clone(), key);
        out.push(Output {
            topic,
            payload: serde_json::to_vec(payload).unwrap_or_default(),
        });
    }

    pub(crate) fn push_raw_if_changed(
        &mut self,
        out: &mut Vec<Output>,
        topic: String,
        payload: Vec<u8>,
    ) {
        if self.published.get(&topic) == Some(&payload) {
            return;
        }
        self.published.insert(topic.clone(), payload.clone());
        out.push(Output { topic, payload });
    }
}
