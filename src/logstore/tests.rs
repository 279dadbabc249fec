//! Segment files under damage: torn tails at every byte offset, flipped bytes, a deleted
//! segment, a cut segment, rollover. The oracle is the generator: it knows every frame's
//! body, and so every frame boundary (54 bytes of overhead per frame, docs/FORMAT.md).
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

use std::fs;
use std::path::Path;

use super::*;

const ID: crate::VaultId = crate::VaultId::from_bytes([0xab; 16]);
const HDR: u64 = 41;
const OVERHEAD: u64 = 54;

fn body(seq: u64) -> Vec<u8> {
    vec![seq as u8; 10 + (seq as usize * 7) % 50]
}

fn frame(seq: u64) -> Frame {
    Frame {
        seq,
        version: FRAME_VERSION,
        flags: if seq.is_multiple_of(3) {
            FLAG_CHANGE
        } else {
            0
        },
        body: body(seq),
        link: [(seq as u8).wrapping_mul(31); 32],
    }
}

fn opts(max: u64) -> SegmentOptions {
    SegmentOptions {
        max_segment_bytes: max,
    }
}

/// Appends frames `0..n`, `per` frames per call; returns the end after each call.
fn fill(log: &SegmentLog, n: u64, per: u64) -> Vec<LogPos> {
    let mut ends = Vec::new();
    let mut s = 0;
    while s < n {
        let k = per.min(n - s);
        let fs: Vec<_> = (s..s + k).map(frame).collect();
        ends.push(log.append(&fs).unwrap());
        s += k;
    }
    log.sync().unwrap();
    ends
}

fn read_all(log: &SegmentLog) -> Result<Vec<Frame>> {
    log.read(0)?.map(|r| r.map(|(f, _)| f)).collect()
}

fn start() -> LogPos {
    LogPos {
        next_seq: 0,
        segment: 0,
        offset: HDR,
    }
}

fn seg_path(dir: &Path, first: u64) -> std::path::PathBuf {
    dir.join("log").join(format!("{first:020}.seg"))
}

#[test]
fn appends_read_back_across_rollover_and_after_reopen() {
    let d = tempfile::tempdir().unwrap();
    let log = SegmentLog::create(d.path(), ID, opts(400)).unwrap();
    fill(&log, 40, 2);
    let want: Vec<_> = (0..40).map(frame).collect();
    assert_eq!(read_all(&log).unwrap(), want);
    // Several segments, each starting at the seq its name and header give, none over
    // the bound by more than one append.
    let mut names: Vec<_> = fs::read_dir(d.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    assert!(names.len() > 3, "{names:?}");
    for n in &names {
        let first: u64 = n[..20].parse().unwrap();
        let b = fs::read(d.path().join("log").join(n)).unwrap();
        assert_eq!(&b[..8], b"MVLOGSEG");
        assert_eq!(&b[25..33], &first.to_be_bytes());
        assert!(b.len() as u64 <= 400 + 2 * (OVERHEAD + 60));
        // The first frame of each segment carries the segment's first seq.
        assert_eq!(
            &b[HDR as usize + 6..HDR as usize + 14],
            &first.to_be_bytes()
        );
    }
    // Reading from the middle starts at the right frame.
    let mid: Vec<_> = log.read(17).unwrap().map(|r| r.unwrap().0).collect();
    assert_eq!(mid, want[17..].to_vec());
    let end = log.end();
    drop(log);
    let log = SegmentLog::open(d.path(), ID, opts(400)).unwrap();
    match log.recover(&start()).unwrap() {
        Recovered::Tail {
            frames,
            end: e,
            cut_bytes,
        } => {
            assert_eq!(frames.into_iter().map(|(_, f)| f).collect::<Vec<_>>(), want);
            assert_eq!(e, end);
            assert_eq!(cut_bytes, 0);
        }
        other => panic!("{other:?}"),
    }
    log.append(&[frame(40)]).unwrap();
    assert_eq!(read_all(&log).unwrap().len(), 41);
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_offset() {
    let d = tempfile::tempdir().unwrap();
    let log = SegmentLog::create(d.path(), ID, opts(1 << 20)).unwrap();
    let ends = fill(&log, 6, 1);
    drop(log);
    let path = seg_path(d.path(), 0);
    let full = fs::read(&path).unwrap();
    // Frame boundaries from the generator: header, then 54 + body bytes per frame.
    let mut bounds = vec![HDR];
    for s in 0..6 {
        bounds.push(bounds[s as usize] + OVERHEAD + body(s).len() as u64);
    }
    assert_eq!(*bounds.last().unwrap(), full.len() as u64);
    // The anchor remembers the end of frame 1; cut the file anywhere after it.
    let from = ends[1];
    assert_eq!(from.offset, bounds[2]);
    for cut in bounds[2]..=full.len() as u64 {
        fs::write(&path, &full[..cut as usize]).unwrap();
        let log = SegmentLog::open(d.path(), ID, opts(1 << 20)).unwrap();
        let whole = bounds.iter().filter(|&&b| b <= cut).count() as u64 - 1;
        match log.recover(&from).unwrap() {
            Recovered::Tail {
                frames,
                end,
                cut_bytes,
            } => {
                assert_eq!(frames.len() as u64, whole - 2, "cut {cut}");
                assert_eq!(end.next_seq, whole);
                assert_eq!(end.offset, bounds[whole as usize]);
                assert_eq!(cut_bytes, cut - bounds[whole as usize]);
            }
            other => panic!("cut {cut}: {other:?}"),
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), bounds[whole as usize]);
        // The log goes on after the cut, and reads back whole.
        log.append(&[frame(whole)]).unwrap();
        let got = read_all(&log).unwrap();
        assert_eq!(got, (0..=whole).map(frame).collect::<Vec<_>>());
    }
    // Cut below the remembered position: the log is behind it.
    fs::write(&path, &full[..bounds[2] as usize - 1]).unwrap();
    let log = SegmentLog::open(d.path(), ID, opts(1 << 20)).unwrap();
    assert!(matches!(log.recover(&from).unwrap(), Recovered::Missing(_)));
}

#[test]
fn flipped_bytes_fail_reads_and_are_cut_only_past_the_remembered_position() {
    let d = tempfile::tempdir().unwrap();
    let log = SegmentLog::create(d.path(), ID, opts(1 << 20)).unwrap();
    let ends = fill(&log, 5, 1);
    drop(log);
    let path = seg_path(d.path(), 0);
    let full = fs::read(&path).unwrap();
    for i in 0..full.len() {
        let mut t = full.clone();
        t[i] ^= 0x20;
        fs::write(&path, &t).unwrap();
        let log = SegmentLog::open(d.path(), ID, opts(1 << 20)).unwrap();
        let rec = log.recover(&ends[4]);
        if (i as u64) < HDR {
            assert!(rec.is_err(), "header flip at {i} accepted");
            continue;
        }
        // Nothing past the end position: open sees no damage; the full read does.
        assert!(matches!(rec.unwrap(), Recovered::Tail { cut_bytes: 0, .. }));
        assert!(
            read_all(&log).is_err(),
            "flip at {i} not seen by a full read"
        );
    }
    // A flip in the last frame, read from before it: treated as a torn append, cut.
    let mut t = full.clone();
    let last = full.len() - 10;
    t[last] ^= 1;
    fs::write(&path, &t).unwrap();
    let log = SegmentLog::open(d.path(), ID, opts(1 << 20)).unwrap();
    match log.recover(&ends[3]).unwrap() {
        Recovered::Tail {
            frames, cut_bytes, ..
        } => {
            assert!(frames.is_empty());
            assert_eq!(cut_bytes, ends[4].offset - ends[3].offset);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_deleted_or_cut_segment_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let log = SegmentLog::create(d.path(), ID, opts(300)).unwrap();
    let ends = fill(&log, 30, 1);
    drop(log);
    let mut segs: Vec<u64> = fs::read_dir(d.path().join("log"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(".seg")
        })
        .map(|e| {
            e.unwrap().file_name().into_string().unwrap()[..20]
                .parse()
                .unwrap()
        })
        .collect();
    segs.sort();
    assert!(segs.len() >= 4);
    let victim = segs[1];
    let copy = fs::read(seg_path(d.path(), victim)).unwrap();

    // Deleted: a full read, and a recovery that crosses the gap, fail; a recovery from a
    // position inside the deleted segment finds it missing.
    fs::remove_file(seg_path(d.path(), victim)).unwrap();
    let log = SegmentLog::open(d.path(), ID, opts(300)).unwrap();
    let before = ends.iter().find(|p| p.segment == segs[0]).unwrap();
    assert!(log.recover(before).is_err());
    let inside = ends.iter().find(|p| p.segment == victim).unwrap();
    assert!(matches!(
        log.recover(inside).unwrap(),
        Recovered::Missing(_)
    ));
    let last = *ends.last().unwrap();
    assert!(matches!(
        log.recover(&last).unwrap(),
        Recovered::Tail { .. }
    ));
    assert!(read_all(&log).is_err());
    drop(log);

    // Cut (not the last segment): at every length a full read fails.
    for cut in [copy.len() - 1, copy.len() / 2, HDR as usize, 10, 0] {
        fs::write(seg_path(d.path(), victim), &copy[..cut]).unwrap();
        let log = SegmentLog::open(d.path(), ID, opts(300)).unwrap();
        let last = *ends.last().unwrap();
        log.recover(&last).unwrap();
        assert!(read_all(&log).is_err(), "cut to {cut} accepted");
        assert!(
            log.recover(before).is_err(),
            "cut to {cut}: recovery across it"
        );
    }
}

#[test]
fn a_segment_torn_while_being_created_is_dropped() {
    let d = tempfile::tempdir().unwrap();
    let log = SegmentLog::create(d.path(), ID, opts(1 << 20)).unwrap();
    let ends = fill(&log, 3, 1);
    drop(log);
    fs::write(seg_path(d.path(), 3), &b"MVLOGSEG\x01"[..]).unwrap();
    let log = SegmentLog::open(d.path(), ID, opts(1 << 20)).unwrap();
    match log.recover(&ends[2]).unwrap() {
        Recovered::Tail { end, cut_bytes, .. } => {
            assert_eq!(end, ends[2]);
            assert_eq!(cut_bytes, 9);
        }
        other => panic!("{other:?}"),
    }
    assert!(!seg_path(d.path(), 3).exists());
    log.append(&[frame(3)]).unwrap();
    assert_eq!(read_all(&log).unwrap().len(), 4);
}

#[test]
fn another_vaults_segment_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let log = SegmentLog::create(d.path(), ID, opts(1 << 20)).unwrap();
    fill(&log, 2, 1);
    drop(log);
    // Refused at open (the tree node file names the vault) or at recovery (the segment).
    let refused = SegmentLog::open(d.path(), crate::VaultId::from([1; 16]), opts(1 << 20))
        .and_then(|log| log.recover(&start()).map(|_| ()));
    assert!(refused.is_err());
    fs::remove_file(d.path().join("log").join("tree")).unwrap();
    let log = SegmentLog::open(d.path(), crate::VaultId::from([1; 16]), opts(1 << 20)).unwrap();
    assert!(log.recover(&start()).is_err());
}

#[test]
fn anchor_slots_are_written_apart_and_read_back() {
    let d = tempfile::tempdir().unwrap();
    let log = SegmentLog::create(d.path(), ID, opts(1 << 20)).unwrap();
    assert_eq!(log.read_anchor().unwrap(), [None, None]);
    let a = vec![1u8; anchor::SLOT_LEN];
    let b = vec![2u8; anchor::SLOT_LEN];
    log.write_anchor(1, &b).unwrap();
    log.write_anchor(0, &a).unwrap();
    log.sync_anchor().unwrap();
    assert_eq!(
        log.read_anchor().unwrap(),
        [Some(a.clone()), Some(b.clone())]
    );
    let raw = fs::read(d.path().join("anchor")).unwrap();
    assert_eq!(&raw[..anchor::SLOT_LEN], &a[..]);
    assert_eq!(&raw[4096..4096 + anchor::SLOT_LEN], &b[..]);
    // Slot 1 torn: read as absent.
    fs::write(d.path().join("anchor"), &raw[..4096 + 20]).unwrap();
    assert_eq!(log.read_anchor().unwrap(), [Some(a), None]);
    assert!(log.write_anchor(2, &b).is_err());
}

#[test]
fn an_append_out_of_sequence_is_refused_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let log = SegmentLog::create(d.path(), ID, opts(1 << 20)).unwrap();
    fill(&log, 2, 1);
    assert!(log.append(&[frame(5)]).is_err());
    assert!(log.append(&[frame(2), frame(4)]).is_err());
    assert_eq!(log.end().next_seq, 2);
    assert_eq!(read_all(&log).unwrap().len(), 2);
}

#[test]
fn read_back_finds_the_last_frames_without_the_start_and_stops_at_damage() {
    let d = tempfile::tempdir().unwrap();
    let log = SegmentLog::create(d.path(), ID, opts(64 << 20)).unwrap();
    fill(&log, 30, 4);
    // A frame larger than the first 64 KiB window, then small ones after it.
    let big = Frame {
        body: vec![0x5a; 200 << 10],
        ..frame(30)
    };
    log.append(std::slice::from_ref(&big)).unwrap();
    log.append(&(31..35).map(frame).collect::<Vec<_>>())
        .unwrap();
    // Oracle: the frames the test generated, newest first.
    let mut want: Vec<Frame> = (0..30).map(frame).collect();
    want.push(big);
    want.extend((31..35).map(frame));
    want.reverse();
    assert_eq!(log.read_back(3).unwrap(), want[..3]);
    assert_eq!(log.read_back(10).unwrap(), want[..10]);
    assert_eq!(log.read_back(1000).unwrap(), want);
    assert_eq!(log.read_back(0).unwrap(), Vec::<Frame>::new());
    // After a reopen (recover from the start) it reads the same.
    drop(log);
    let log = SegmentLog::open(d.path(), ID, opts(64 << 20)).unwrap();
    assert!(matches!(
        log.recover(&start()).unwrap(),
        Recovered::Tail { .. }
    ));
    assert_eq!(log.read_back(1000).unwrap(), want);
    // A flipped byte inside frame 33 (the second newest), the log reopened at its end
    // (as from an anchor): only frame 34 is found.
    drop(log);
    let path = seg_path(d.path(), 0);
    let mut bytes = fs::read(&path).unwrap();
    let end = LogPos {
        next_seq: 35,
        segment: 0,
        offset: bytes.len() as u64,
    };
    let at = bytes.len() - (OVERHEAD as usize + body(34).len()) - 10;
    bytes[at] ^= 0x20;
    fs::write(&path, &bytes).unwrap();
    let log = SegmentLog::open(d.path(), ID, opts(64 << 20)).unwrap();
    assert!(matches!(log.recover(&end).unwrap(), Recovered::Tail { .. }));
    assert_eq!(log.read_back(5).unwrap(), want[..1]);
}

#[test]
fn read_back_stays_in_the_last_segment() {
    let d = tempfile::tempdir().unwrap();
    let log = SegmentLog::create(d.path(), ID, opts(400)).unwrap();
    fill(&log, 40, 2);
    let last: u64 = fs::read_dir(d.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| n.strip_suffix(".seg").map(|s| s.parse().unwrap()))
        .max()
        .unwrap();
    assert!(last > 0, "the log rolled over");
    let got = log.read_back(100).unwrap();
    let want: Vec<Frame> = (last..40).rev().map(frame).collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
}
