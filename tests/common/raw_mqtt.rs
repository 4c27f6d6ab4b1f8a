//! Raw MQTT 3.1.1 packets, for tests that must send what no client library would.

/// MQTT's variable-length "remaining length".
pub fn remaining_length(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A length-prefixed MQTT string.
pub fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend(s);
    out
}

/// A packet: its first byte, the remaining length, the body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    p.extend(remaining_length(body.len()));
    p.extend(body);
    p
}
