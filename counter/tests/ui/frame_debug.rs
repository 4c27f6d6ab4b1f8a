fn main() {
    let ring = tellijn_counter::frame::Ring::new(16, 16);
    let frame = ring.take_free();
    eprintln!("{:?}", frame);
}
