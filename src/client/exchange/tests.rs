use super::*;

const PARSE_COMPLETE: &[u8] = b"1\0\0\0\x04";
const CLOSE_COMPLETE: &[u8] = b"3\0\0\0\x04";
const BIND_COMPLETE: &[u8] = b"2\0\0\0\x04";
const NO_DATA: &[u8] = b"n\0\0\0\x04";
const READY_IDLE: &[u8] = b"Z\0\0\0\x05I";
const READY_IN_TX: &[u8] = b"Z\0\0\0\x05T";
const DATA_ROW_ONE_COLUMN: &[u8] = b"D\0\0\0\x0b\0\x01\0\0\0\x011";
const SELECT_1: &[u8] = b"C\0\0\0\x0dSELECT 1\0";
const NO_PARAMETERS: &[u8] = b"t\0\0\0\x06\0\0";
const ERROR_26000: &[u8] = b"E\0\0\0\x0cC26000\0\0";

fn bytes(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A RowDescription of one int4 (23) or text (25) column named `a`.
fn row_description(oid: u32) -> Vec<u8> {
    let mut body = vec![0, 1, b'a', 0];
    body.extend_from_slice(&0u32.to_be_bytes());
    body.extend_from_slice(&0u16.to_be_bytes());
    body.extend_from_slice(&oid.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(&(-1i32).to_be_bytes());
    body.extend_from_slice(&0u16.to_be_bytes());
    frame(b'T', &body)
}

fn shape_of(oid: u32) -> Shape {
    Shape::of(Some(b"\0\0"), Some(&row_description(oid)[5..])).unwrap()
}

/// Scans `buf` to its end as relay would: the bytes the client gets.
fn run(x: &mut Exchange, buf: &[u8], prepared: &mut Prepared) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let scan = x.scan(&buf[at..], prepared).unwrap();
        out.extend_from_slice(&buf[at..at + scan.forward]);
        at += scan.forward + scan.cut;
        if let Some(inject) = scan.inject {
            out.extend_from_slice(&inject);
        }
        if scan.cut == 0 {
            assert_eq!(at, buf.len(), "scan stopped early");
            return out;
        }
    }
}

fn parse(origin: Origin) -> Expect {
    Expect::Parse {
        origin,
        before: None,
        undo: None,
    }
}

#[test]
fn forwards_everything_and_reads_status() {
    let mut x = Exchange::default();
    x.sent(Expect::Ready);
    let buf = bytes(&[DATA_ROW_ONE_COLUMN, SELECT_1, READY_IN_TX]);
    let scan = x.scan(&buf, &mut Prepared::default()).unwrap();
    assert_eq!(
        scan,
        Scan {
            forward: buf.len(),
            cut: 0,
            inject: None
        }
    );
    assert_eq!(x.pending, 0);
    assert!(x.in_transaction());
    assert!(!x.busy());
}

#[test]
fn cuts_out_completions_of_added_messages() {
    let mut x = Exchange::default();
    x.sent(Expect::Close {
        origin: Origin::Added,
        before: None,
        undo: None,
    });
    x.sent(parse(Origin::Added));
    x.sent(parse(Origin::Client));
    x.sent(Expect::Bind { alias: None });
    x.sent(Expect::Execute);
    x.sent(Expect::Sync {
        origin: Origin::Client,
    });
    let buf = bytes(&[
        CLOSE_COMPLETE,
        PARSE_COMPLETE,
        PARSE_COMPLETE,
        BIND_COMPLETE,
        DATA_ROW_ONE_COLUMN,
        SELECT_1,
        READY_IDLE,
    ]);
    let out = run(&mut x, &buf, &mut Prepared::default());
    assert_eq!(out, &buf[10..]);
    assert_eq!(x.pending, 0);
    assert!(!x.busy());
}

#[test]
fn large_rows_pass_through_in_pieces() {
    let mut x = Exchange::default();
    x.sent(Expect::Ready);
    let mut row = b"D\0\x01\0\x04".to_vec();
    row.resize(5 + 65536, b'x');
    let mut prepared = Prepared::default();
    assert_eq!(x.scan(&row[..1000], &mut prepared).unwrap().forward, 1000);
    assert_eq!(
        x.scan(&row[1000..], &mut prepared).unwrap().forward,
        row.len() - 1000
    );
    assert_eq!(x.scan(READY_IDLE, &mut prepared).unwrap().forward, 6);
    assert_eq!(x.pending, 0);
}

#[test]
fn waits_for_the_status_byte() {
    let mut x = Exchange::default();
    x.sent(Expect::Ready);
    let scan = x.scan(&READY_IDLE[..5], &mut Prepared::default()).unwrap();
    assert_eq!((scan.forward, scan.cut), (0, 0));
    assert_eq!(x.pending, 1);
}

#[test]
fn an_error_undoes_skipped_statement_changes() {
    let mut x = Exchange::default();
    let mut prepared = Prepared::default();
    let (old, new): (Arc<str>, Arc<str>) = (Arc::from("old"), Arc::from("new"));
    prepared.parsed(&old);
    // Close old (was there), Parse new (was not): both skipped after the error.
    let closed = prepared.closed(&old);
    x.sent(Expect::Close {
        origin: Origin::Added,
        before: Some(closed),
        undo: None,
    });
    let parsed = prepared.parsed(&new);
    x.sent(Expect::Parse {
        origin: Origin::Client,
        before: Some(parsed),
        undo: None,
    });
    x.sent(Expect::Sync {
        origin: Origin::Client,
    });
    let buf = bytes(&[b"E\0\0\0\x0cC42601\0\0", READY_IDLE]);
    assert_eq!(run(&mut x, &buf, &mut prepared), buf);
    assert!(prepared.get("old").is_some());
    assert!(prepared.get("new").is_none());
    assert_eq!(x.pending, 0);
    assert!(!x.busy());
    assert_eq!(x.errors, vec![*b"42"]);
}

#[test]
fn an_error_in_a_batch_drops_the_queries_the_server_skips() {
    // Bind (of an unknown statement), Execute, then a simple Query without
    // a Sync: PostgreSQL skips the Query and waits for a Sync.
    let mut x = Exchange::default();
    x.sent(Expect::Bind { alias: None });
    x.sent(Expect::Execute);
    x.sent(Expect::Ready);
    assert_eq!(x.pending, 1);
    let out = run(&mut x, ERROR_26000, &mut Prepared::default());
    assert_eq!(out, ERROR_26000);
    assert_eq!(x.pending, 0);
    assert!(x.skipping, "the server waits for a Sync");
    assert!(x.busy());
    x.sent(Expect::Sync {
        origin: Origin::Client,
    });
    run(&mut x, READY_IDLE, &mut Prepared::default());
    assert!(!x.skipping);
    assert!(!x.busy());
}

#[test]
fn an_error_before_a_sync_skips_to_it_only() {
    let mut x = Exchange::default();
    x.sent(Expect::Bind { alias: None });
    x.sent(Expect::Execute);
    x.sent(Expect::Ready);
    x.sent(Expect::Sync {
        origin: Origin::Client,
    });
    x.sent(Expect::Ready);
    run(&mut x, ERROR_26000, &mut Prepared::default());
    assert!(!x.skipping);
    assert_eq!(x.pending, 2, "the Sync's and the later Query's");
    run(
        &mut x,
        &bytes(&[READY_IDLE, SELECT_1, READY_IDLE]),
        &mut Prepared::default(),
    );
    assert_eq!(x.pending, 0);
    assert!(!x.busy());
}

#[test]
fn errors_in_simple_queries_and_at_sync_do_not_skip() {
    let mut x = Exchange::default();
    x.sent(Expect::Ready);
    x.sent(Expect::Ready);
    run(&mut x, ERROR_26000, &mut Prepared::default());
    assert_eq!(x.pending, 2);
    run(&mut x, READY_IDLE, &mut Prepared::default());
    x.sent(Expect::Sync {
        origin: Origin::Client,
    });
    // A commit at Sync that fails (a deferred constraint).
    run(&mut x, ERROR_26000, &mut Prepared::default());
    assert!(!x.skipping);
    assert_eq!(x.pending, 2);
}

#[test]
fn own_messages_are_cut_out_errors_included() {
    let mut x = Exchange::default();
    x.sent(parse(Origin::Own));
    x.sent(Expect::Sync {
        origin: Origin::Own,
    });
    x.sent(Expect::Ready);
    let buf = bytes(&[ERROR_26000, READY_IDLE, SELECT_1, READY_IDLE]);
    let out = run(&mut x, &buf, &mut Prepared::default());
    assert_eq!(out, bytes(&[SELECT_1, READY_IDLE]));
    assert!(x.errors.is_empty());
    assert_eq!(x.pending, 0);
}

#[test]
fn client_describes_are_learnt_and_checks_compared() {
    let mut x = Exchange::default();
    let mut prepared = Prepared::default();
    let name: Arc<str> = Arc::from("pgsplit_s");
    prepared.parsed(&name);
    x.sent(Expect::Describe(Describing::new(
        Origin::Client,
        name.clone(),
        None,
    )));
    x.sent(Expect::Sync {
        origin: Origin::Client,
    });
    let int = row_description(23);
    let buf = bytes(&[NO_PARAMETERS, &int, READY_IDLE]);
    assert_eq!(run(&mut x, &buf, &mut prepared), buf);
    assert_eq!(x.described, vec![(name.clone(), shape_of(23))]);
    assert_eq!(prepared.get("pgsplit_s").unwrap().shape, Some(shape_of(23)));

    // Prepared again elsewhere and checked: the answer is cut out.
    for (oid, verdict) in [(23, Checked::Same), (25, Checked::Changed)] {
        let mut x = Exchange::default();
        x.sent(parse(Origin::Added));
        x.sent(Expect::Describe(Describing::new(
            Origin::Added,
            name.clone(),
            Some(shape_of(23)),
        )));
        let rows = row_description(oid);
        let buf = bytes(&[PARSE_COMPLETE, NO_PARAMETERS, &rows]);
        assert!(run(&mut x, &buf, &mut prepared).is_empty());
        assert_eq!(x.checked, Some(verdict));
        assert!(x.described.is_empty(), "the client was told nothing");
        assert!(!x.busy());
    }

    // Preparing it failed: the client has the error; the check failed.
    let mut x = Exchange::default();
    x.sent(parse(Origin::Added));
    x.sent(Expect::Describe(Describing::new(
        Origin::Added,
        name,
        Some(shape_of(23)),
    )));
    assert_eq!(run(&mut x, ERROR_26000, &mut prepared), ERROR_26000);
    assert_eq!(x.checked, Some(Checked::Failed));
    assert!(x.skipping);
}

#[test]
fn a_refused_message_error_is_replaced() {
    let mut x = Exchange::default();
    let substitute = Bytes::from(frame(b'E', b"C0A000\0\0"));
    x.sent(Expect::Refused {
        substitute: Some(substitute.clone()),
    });
    x.sent(Expect::Sync {
        origin: Origin::Client,
    });
    let buf = bytes(&[ERROR_26000, READY_IDLE]);
    let out = run(&mut x, &buf, &mut Prepared::default());
    assert_eq!(out, bytes(&[&substitute, READY_IDLE]));
    assert_eq!(x.errors, vec![*b"0A"]);
}

#[test]
fn a_malformed_describe_is_refused_and_the_session_goes_on() {
    let mut x = Exchange::default();
    x.sent_raw(b"D\0\0\0\x07Xs\0");
    x.sent_raw(b"H\0\0\0\x04");
    x.sent(Expect::Sync {
        origin: Origin::Client,
    });
    let error = frame(b'E', b"SERROR\0C08P01\0\0");
    run(
        &mut x,
        &bytes(&[&error, READY_IDLE]),
        &mut Prepared::default(),
    );
    assert!(!x.busy());
    assert!(!x.fatal);
}

#[test]
fn portal_describes_and_executes_are_answered_in_turn() {
    let mut x = Exchange::default();
    x.sent_raw(b"B\0\0\0\x0c\0\0\0\0\0\0\0\0");
    x.sent_raw(b"D\0\0\0\x06P\0");
    x.sent_raw(b"E\0\0\0\x09\0\0\0\0\0");
    x.sent(Expect::Sync {
        origin: Origin::Client,
    });
    run(
        &mut x,
        &bytes(&[BIND_COMPLETE, NO_DATA]),
        &mut Prepared::default(),
    );
    assert!(matches!(x.expect.front(), Some(Expect::Execute)));
    run(&mut x, SELECT_1, &mut Prepared::default());
    assert!(matches!(x.expect.front(), Some(Expect::Sync { .. })));
}

#[test]
fn copy_in_through_execute_consumes_the_batch_sync() {
    let mut x = Exchange::default();
    x.sent(Expect::Bind { alias: None });
    x.sent(Expect::Execute);
    x.sent(Expect::Sync {
        origin: Origin::Client,
    });
    let copy_in = frame(b'G', b"\0\0\0");
    run(
        &mut x,
        &bytes(&[BIND_COMPLETE, &copy_in]),
        &mut Prepared::default(),
    );
    assert_eq!(x.pending, 0);
    assert!(x.busy(), "the COPY's Execute is still to complete");
    x.sent(Expect::Sync {
        origin: Origin::Client,
    });
    run(
        &mut x,
        &bytes(&[b"C\0\0\0\x0bCOPY 1\0", READY_IDLE]),
        &mut Prepared::default(),
    );
    assert!(!x.busy());
}

#[test]
fn garbage_from_the_server_is_an_error() {
    let mut x = Exchange::default();
    assert!(x.scan(b"D\0\0\0\x01", &mut Prepared::default()).is_err());
}
