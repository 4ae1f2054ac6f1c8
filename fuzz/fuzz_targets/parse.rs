//! `triaged::parse::parse` on arbitrary bytes: never panics out (panics that
//! mail-parser raises are contained inside `parse`, as in production), and
//! the result describes its input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: triaged_fuzz::contain_parser_panics(),
    |data: &[u8]| {
        let p = triaged::parse::parse(data);
        triaged_fuzz::check_parsed(&p, data);
    }
);
