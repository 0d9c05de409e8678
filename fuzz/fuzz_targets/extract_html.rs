//! HTML extraction (services/ingest/src/extract.rs) on any text: never panics, and gives
//! what PostgreSQL and both indexes need (see `braid_fuzz_braid_fuzz::check_extracted`).
#![no_main]

use braid_ingest::fuzzing::{Mime, extract};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    braid_fuzz::check_extracted(&text, &extract(Mime::Html, &text));
    // Plain text is what the two others reduce to: normalising twice changes nothing.
    let plain = extract(Mime::Plain, &text);
    braid_fuzz::check_extracted(&text, &plain);
    assert_eq!(extract(Mime::Plain, &plain.text).text, plain.text);
});
