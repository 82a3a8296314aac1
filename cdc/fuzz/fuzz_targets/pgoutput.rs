//! Fuzzes the pgoutput decoder and the relation cache: the input is a sequence of frames
//! (u16 big-endian length + bytes), fed in order, so Relation messages followed by tuples
//! reach typed value parsing. No input may panic.
#![no_main]

use bytes::Bytes;
use cdc::replication::{pgoutput, Decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::default();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        if let Ok(msg) = pgoutput::decode(Bytes::copy_from_slice(frame)) {
            let _ = decoder.event(msg);
        }
    }
});
