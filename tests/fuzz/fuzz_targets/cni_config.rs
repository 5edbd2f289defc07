#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rktnetes_operator::fuzzing::cni_config(data));
