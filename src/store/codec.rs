//! How stored mail bytes are kept: the raw message (`messages.raw`) and
//! composed mail (`outbox.raw`), each with its codec in `raw_codec`
//! (migration 0014). Rows from before it are `'none'` (the bytes as they
//! are); messages written since are `'zstd'` (one zstd frame, level 3, its
//! content size in the frame header), composed mail `'zstd-mail1'` (the
//! same, with the shipped dictionary `mail-v1.zdict`). Every reader of those
//! columns goes through [`decode`]; every writer through [`encode`] or
//! [`encode_mail`].
//!
//! The dictionary: 8 KiB trained (`zstd --train --maxdict=8192`) on 1,200
//! acknowledgements composed by the shipped templates (`triaged bench
//! ingest`). Composed mail repeats its template's text, headers and markup
//! from row to row, which a frame of its own cannot see: an acknowledgement
//! of 1.8 KB is ~800 bytes alone, ~180 with the dictionary. Mail from other
//! templates still compresses, less well. A shipped dictionary never
//! changes (rows name it): a new one gets a new codec name.
//!
//! Decoding is bounded: the frame must declare its size, the declared size
//! must be within the caller's limit (the message size limit and a margin),
//! and the output buffer is that size, never grown; a frame that declares
//! less than it holds, a truncated or corrupt frame, or an unknown codec is
//! an error ([`CodecError`]), never a panic or an unbounded allocation.

use std::cell::RefCell;

use zstd::bulk::{Compressor, Decompressor};

/// Bytes kept as they are (rows from before migration 0014).
pub const NONE: &str = "none";
/// One zstd frame.
pub const ZSTD: &str = "zstd";
/// One zstd frame made with [`MAIL1`].
pub const ZSTD_MAIL1: &str = "zstd-mail1";

/// The dictionary of composed mail, version 1 (see the module's words).
const MAIL1: &[u8] = include_bytes!("mail-v1.zdict");

/// zstd's level: level 3 is zstd's default, fast to write (a few KB in
/// microseconds) and within a few percent of the higher levels on mail.
const LEVEL: i32 = 3;

/// Margin over the message size limit: what a composed mail adds (its
/// headers and text) to the bytes it carries of a message.
pub const MARGIN: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("stored mail has an unknown codec {0:?}")]
    UnknownCodec(String),
    #[error("stored mail: {0}")]
    Corrupt(String),
    #[error(
        "stored mail would decode to {size} bytes, over the limit of {limit} bytes \
         (ingest.max_message_bytes and a margin)"
    )]
    TooLarge { size: u64, limit: usize },
}

/// The codec and bytes to store for the raw message `raw`.
pub fn encode(raw: &[u8]) -> (&'static str, Vec<u8>) {
    // One compressor per thread: making a zstd context for each message cost
    // about a third of compressing it (`ZSTD_createCCtx`, 2 % of ingest).
    let packed = PLAIN_CODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Compressor::new(LEVEL).ok();
        }
        match slot.as_mut() {
            Some(c) => c.compress(raw),
            None => zstd::bulk::compress(raw, LEVEL),
        }
    });
    match packed {
        // Cut to its length: the buffer is zstd's bound (about the input's
        // size) and is held until its row is written, by a message read
        // ahead of its transaction among others (`ingest`).
        Ok(mut packed) => {
            packed.shrink_to_fit();
            (ZSTD, packed)
        }
        // zstd fails only for want of memory or on a bug: keep the bytes as
        // they are rather than lose them.
        Err(_) => (NONE, raw.to_vec()),
    }
}

thread_local! {
    /// A compressor without a dictionary, per thread (see [`encode`]).
    static PLAIN_CODER: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    /// A compressor and a decompressor with [`MAIL1`] loaded, per thread:
    /// loading the dictionary costs more than compressing a mail.
    static MAIL1_CODER: RefCell<Option<(Compressor<'static>, Decompressor<'static>)>> =
        const { RefCell::new(None) };
}

/// Runs `f` with this thread's coders of [`MAIL1`]; `None` if they cannot
/// be made (no memory).
fn with_mail1<T>(
    f: impl FnOnce(&mut Compressor<'static>, &mut Decompressor<'static>) -> T,
) -> Option<T> {
    MAIL1_CODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let c = Compressor::with_dictionary(LEVEL, MAIL1).ok()?;
            let d = Decompressor::with_dictionary(MAIL1).ok()?;
            *slot = Some((c, d));
        }
        let (c, d) = slot.as_mut()?;
        Some(f(c, d))
    })
}

/// The codec and bytes to store for the composed mail `raw` (the outbox).
pub fn encode_mail(raw: &[u8]) -> (&'static str, Vec<u8>) {
    match with_mail1(|c, _| c.compress(raw)) {
        Some(Ok(mut packed)) => {
            packed.shrink_to_fit();
            (ZSTD_MAIL1, packed)
        }
        _ => encode(raw),
    }
}

/// The size a zstd frame declares, if within `limit`.
fn declared_size(stored: &[u8], limit: usize) -> Result<usize, CodecError> {
    let size = match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(size)) => size,
        Ok(None) => return Err(CodecError::Corrupt("zstd frame without its size".into())),
        Err(_) => return Err(CodecError::Corrupt("not a zstd frame".into())),
    };
    usize::try_from(size)
        .ok()
        .filter(|&n| n <= limit)
        .ok_or(CodecError::TooLarge { size, limit })
}

/// `out`, if it is as long as the frame declared.
fn exactly(out: Vec<u8>, size: usize) -> Result<Vec<u8>, CodecError> {
    if out.len() != size {
        return Err(CodecError::Corrupt(format!(
            "zstd frame declares {size} bytes but holds {}",
            out.len()
        )));
    }
    Ok(out)
}

/// The bytes `stored` under `codec` stand for, at most `limit` of them.
pub fn decode(codec: &str, stored: Vec<u8>, limit: usize) -> Result<Vec<u8>, CodecError> {
    match codec {
        NONE => Ok(stored),
        ZSTD => {
            let size = declared_size(&stored, limit)?;
            let out = zstd::bulk::decompress(&stored, size)
                .map_err(|e| CodecError::Corrupt(format!("zstd: {e}")))?;
            exactly(out, size)
        }
        ZSTD_MAIL1 => {
            let size = declared_size(&stored, limit)?;
            let out = with_mail1(|_, d| d.decompress(&stored, size))
                .ok_or_else(|| CodecError::Corrupt("zstd: no memory for the dictionary".into()))?
                .map_err(|e| CodecError::Corrupt(format!("zstd: {e}")))?;
            exactly(out, size)
        }
        other => Err(CodecError::UnknownCodec(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(n: usize) -> Vec<u8> {
        let mut m = b"From: a@example.org\r\nSubject: hello\r\n\r\n".to_vec();
        for i in 0..n {
            m.extend_from_slice(
                format!("line {i} of the body, portal login timeout\r\n").as_bytes(),
            );
        }
        m
    }

    #[test]
    fn round_trip_and_smaller() {
        for m in [Vec::new(), b"x".to_vec(), mail(10), mail(2000)] {
            let (codec, packed) = encode(&m);
            assert_eq!(codec, ZSTD);
            assert_eq!(decode(codec, packed.clone(), m.len()).unwrap(), m);
            if m.len() > 1000 {
                assert!(
                    packed.len() * 3 < m.len(),
                    "{} of {}",
                    packed.len(),
                    m.len()
                );
            }
        }
        for m in [Vec::new(), mail(10), ack()] {
            let (codec, packed) = encode_mail(&m);
            assert_eq!(codec, ZSTD_MAIL1);
            assert_eq!(decode(codec, packed, m.len()).unwrap(), m);
        }
        // The dictionary earns its place on composed mail.
        let (_, alone) = encode(&ack());
        let (_, with) = encode_mail(&ack());
        assert!(
            with.len() * 2 < alone.len(),
            "{} vs {}",
            with.len(),
            alone.len()
        );
        // Old rows: as they are, whatever their size.
        assert_eq!(decode(NONE, mail(100), 0).unwrap(), mail(100));
    }

    /// An acknowledgement as the shipped templates compose it.
    fn ack() -> Vec<u8> {
        b"From: \"ISDA support\" <isda-support@example.edu>\r\nReply-To: \"ISDA support\" <isda-support@example.edu>\r\n\
          Subject: [ISDA #4711] VPN drops every hour\r\nAuto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n\
          To: kim@physics.example.org\r\nMIME-Version: 1.0\r\n\r\nHello Kim,\r\n\r\nthank you for writing to ISDA support. \
          Your request has been received and\r\nrecorded as case [ISDA #4711].\r\n\r\nWe will respond by 2026-12-01 15:00 CST.\r\n\
          Please keep [ISDA #4711] in the subject when you write about this\r\nrequest again; simply replying to this message \
          does that for you.\r\n\r\n--\r\nISDA support <isda-support@example.edu>\r\nThis is an automatic reply.\r\n"
            .to_vec()
    }

    #[test]
    fn the_shipped_dictionary_never_changes() {
        // Rows name it: a new dictionary is a new codec.
        assert_eq!(
            crate::parse::sha256_hex(MAIL1),
            "2e435bdabf8a9b703b590fa01cbffb49aa00b2b83acd8fb67b1c6ff4ac46bbce"
        );
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let m = mail(200);
        let (_, packed) = encode(&m);
        assert!(matches!(
            decode(ZSTD, b"not zstd at all".to_vec(), 1 << 20),
            Err(CodecError::Corrupt(_))
        ));
        assert!(matches!(
            decode(ZSTD, Vec::new(), 1 << 20),
            Err(CodecError::Corrupt(_))
        ));
        // Truncated.
        let cut = packed[..packed.len() / 2].to_vec();
        assert!(matches!(
            decode(ZSTD, cut, 1 << 20),
            Err(CodecError::Corrupt(_))
        ));
        // Flipped bytes in the payload (the frame has a checksum only if
        // asked; either the decoder or the size check must refuse it, or
        // it decodes to the declared size without panicking).
        for i in 6..packed.len() {
            let mut bad = packed.clone();
            bad[i] ^= 0x5a;
            if let Ok(out) = decode(ZSTD, bad, 1 << 20) {
                assert!(out.len() <= 1 << 20);
            }
        }
        // A frame made with the dictionary needs it.
        let (_, with) = encode_mail(&m);
        assert!(decode(ZSTD, with.clone(), 1 << 20).is_err());
        assert_eq!(
            decode("lz4", packed, 1 << 20),
            Err(CodecError::UnknownCodec("lz4".into()))
        );
    }

    #[test]
    fn a_bomb_is_refused_before_it_is_decoded() {
        // 64 MiB of zeros compress to a few KB.
        let zeros = vec![0u8; 64 << 20];
        let (_, bomb) = encode(&zeros);
        assert!(bomb.len() < 64 << 10);
        assert_eq!(
            decode(ZSTD, bomb.clone(), 1 << 20),
            Err(CodecError::TooLarge {
                size: 64 << 20,
                limit: 1 << 20
            })
        );
        // A frame without its size (streamed) is refused too.
        let mut streamed = Vec::new();
        let mut enc = zstd::stream::Encoder::new(&mut streamed, 3).unwrap();
        std::io::copy(&mut &zeros[..1 << 20], &mut enc).unwrap();
        enc.finish().unwrap();
        assert!(matches!(
            decode(ZSTD, streamed, 64 << 20),
            Err(CodecError::Corrupt(_))
        ));
        // A frame that declares less than it holds stops at what it declared.
        let (_, small) = encode(&zeros[..1000]);
        let mut lying = small.clone();
        lying.extend_from_slice(&bomb);
        assert!(decode(ZSTD, lying, 1 << 20).is_err());
    }
}
