#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ssh_edge::fuzz_entry::token_key(data));
