//! The frame type cannot be cloned, copied, printed or serialised: each of these programs must
//! fail to compile (with the error in its `.stderr` file).

#[test]
fn a_frame_cannot_be_cloned_copied_printed_or_serialised() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/frame_*.rs");
}
