#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rktnetes_operator::fuzzing::render_spec(data));
