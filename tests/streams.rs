//! Streams fold to the same response however their bytes are split: every stream fixture is fed
//! whole, cut in two at every byte boundary, and in many random pieces.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use specter::unstable::engine::stream::{Deframer, Folder};
use specter::unstable::engine::{self, HttpTarget, Request};
use specter::Catalog;

use specter::harness::cases::{self, read_case};

/// Recorded streams that succeeded.
fn stream_cases() -> Vec<PathBuf> {
    cases::discover(Path::new("tests/fixtures"))
        .unwrap()
        .into_iter()
        .map(|c| c.dir)
        .filter(|dir| {
            let data = read_case(dir).unwrap();
            data.streaming == Some(true) && data.status == 200
        })
        .collect()
}

/// Folds `pieces` of a body with the case's stream rules.
fn fold(catalog: &Catalog, dir: &Path, pieces: &[&[u8]]) -> (serde_json::Value, u64) {
    let data = read_case(dir).unwrap();
    let target = HttpTarget::parse(&data.url).unwrap();
    let found = catalog
        .find("POST", Some(&target.host), &target.path, &target.query)
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&data.request).unwrap_or_default();
    let request = Request {
        target: &target,
        headers: &[],
        body: &body,
        captures: &found.captures,
    };
    let content_type = data.content_type;
    let stream = engine::stream_for(&found.operation, &request, content_type.as_deref())
        .unwrap_or_else(|| {
            panic!(
                "{}: the operation does not read this response as a stream",
                dir.display()
            )
        });
    let mut deframer = Deframer::new(stream.framing);
    let mut folder = Folder::new(usize::MAX);
    let mut frames = Vec::new();
    for piece in pieces {
        deframer.push(piece, &mut frames);
        for frame in frames.drain(..) {
            folder.frame(stream, &body, &frame);
        }
    }
    deframer.finish(&mut frames);
    for frame in frames.drain(..) {
        folder.frame(stream, &body, &frame);
    }
    let outcome = folder.finish(stream, &body);
    (outcome.response, outcome.chunks)
}

fn stream_framing(catalog: &Catalog, dir: &Path) -> specter::unstable::compile::rules::Framing {
    let data = read_case(dir).unwrap();
    let target = HttpTarget::parse(&data.url).unwrap();
    let found = catalog
        .find("POST", Some(&target.host), &target.path, &target.query)
        .unwrap();
    found.operation.stream.as_ref().unwrap().framing
}

fn frames(
    framing: specter::unstable::compile::rules::Framing,
    pieces: &[&[u8]],
) -> Vec<specter::unstable::engine::stream::Frame> {
    let mut deframer = Deframer::new(framing);
    let mut out = Vec::new();
    for piece in pieces {
        deframer.push(piece, &mut out);
    }
    deframer.finish(&mut out);
    out
}

fn body_of(dir: &Path) -> Vec<u8> {
    read_case(dir).unwrap().response
}

#[test]
fn split_anywhere_gives_the_same_response() {
    let catalog = Catalog::load(&[PathBuf::from("providers")]).unwrap();
    let cases = stream_cases();
    assert!(cases.len() >= 6, "{} stream cases", cases.len());
    for dir in cases {
        let body = body_of(&dir);
        let whole = fold(&catalog, &dir, &[&body]);
        assert!(whole.1 > 0, "{}: no chunk folded", dir.display());
        // Frames are what folding sees: cut anywhere, the frames are the same.
        let framing = stream_framing(&catalog, &dir);
        let all = frames(framing, &[&body]);
        // Every boundary of small bodies; about 1,500 evenly spread ones of large bodies.
        let stride = (body.len() / 1500).max(1);
        for cut in (1..body.len()).step_by(stride) {
            let (a, b) = body.split_at(cut);
            assert!(
                frames(framing, &[a, b]) == all,
                "{} cut at {cut}",
                dir.display()
            );
        }
        // Random pieces from a fixed-seed generator, so failures reproduce.
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..20 {
            let mut pieces = Vec::new();
            let mut rest = body.as_slice();
            while !rest.is_empty() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let n = (seed % 64 + 1) as usize;
                let (piece, tail) = rest.split_at(n.min(rest.len()));
                pieces.push(piece);
                rest = tail;
            }
            assert_eq!(
                fold(&catalog, &dir, &pieces),
                whole,
                "{} round {round}",
                dir.display()
            );
        }
    }
}
