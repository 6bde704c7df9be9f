use proptest::prelude::*;

use super::*;

/// An event of type `event` with `data`, dispatched while the last event id was `id`.
fn event(event: &str, data: &str, id: Option<&str>) -> SseEvent {
    SseEvent { event: event.to_string(), data: data.to_string(), id: id.map(str::to_string) }
}

/// The events of `stream` pushed in one chunk, which must be valid.
fn parse(stream: &str) -> Vec<SseEvent> {
    SseParser::new().push(stream.as_bytes()).into_iter().map(|event| event.expect("a valid stream")).collect()
}

/// The events of `chunks` pushed one after the other into `parser`, which must be valid.
fn push_all<'a>(parser: &mut SseParser, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<SseEvent> {
    chunks.into_iter().flat_map(|chunk| parser.push(chunk)).map(|event| event.expect("a valid stream")).collect()
}

// Golden cases: the examples of the WHATWG HTML standard, "Server-sent events" (authoring and interpreting an
// event stream).

#[test]
fn spec_messages_one_per_blank_line() {
    let stream = "data: This is the first message.\n\ndata: This is the second message, it\ndata: has two lines.\n\n\
                  data: This is the third message.\n\n";
    assert_eq!(
        parse(stream),
        [
            event("message", "This is the first message.", None),
            event("message", "This is the second message, it\nhas two lines.", None),
            event("message", "This is the third message.", None),
        ]
    );
}

#[test]
fn spec_event_types() {
    let stream = "event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n";
    assert_eq!(
        parse(stream),
        [event("add", "73857293", None), event("remove", "2153", None), event("add", "113411", None)]
    );
}

#[test]
fn spec_data_lines_join_with_newlines() {
    assert_eq!(parse("data: YHOO\ndata: +2\ndata: 10\n\n"), [event("message", "YHOO\n+2\n10", None)]);
}

#[test]
fn spec_four_blocks_with_ids() {
    // A comment fires nothing; "id: 1" is in effect for the first event; a bare "id" resets it to empty; one
    // space only is stripped; the last block needs its blank line (the end of the stream is not enough).
    let stream = ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n";
    let mut parser = SseParser::new();
    let events = push_all(&mut parser, [stream.as_bytes()]);
    assert_eq!(events, [event("message", "first event", Some("1")), event("message", "second event", None)]);
    assert_eq!(parser.last_event_id(), None);
    assert_eq!(push_all(&mut parser, [&b"\n"[..]]), [event("message", " third event", None)]);
}

#[test]
fn spec_empty_data_fields() {
    // "data" alone appends an empty line: the first block fires an event with empty data, the middle one with
    // a single newline; the last has no blank line after it.
    assert_eq!(parse("data\n\ndata\ndata\n\ndata:"), [event("message", "", None), event("message", "\n", None)]);
}

#[test]
fn spec_space_after_the_colon_is_optional() {
    assert_eq!(parse("data:test\n\ndata: test\n\n"), [event("message", "test", None), event("message", "test", None)]);
}

// The rest of the rules.

#[test]
fn every_line_ending_ends_a_line() {
    let expected = [event("put", "a\nb", Some("3"))];
    for ending in ["\n", "\r", "\r\n"] {
        let stream = ["event: put", "id: 3", "data: a", "data: b", "", ""].join(ending);
        assert_eq!(parse(&stream), expected, "line ending {ending:?}");
    }
    // Mixed, and CR LF split between chunks is one line ending, not two.
    let mut parser = SseParser::new();
    let events = push_all(&mut parser, [&b"data: x\r"[..], b"", b"\ndata: y\r", b"\n\r", b"\n"]);
    assert_eq!(events, [event("message", "x\ny", None)]);
}

#[test]
fn the_last_event_id_persists_until_replaced() {
    let stream = "id: 7\ndata: a\n\ndata: b\n\nid: 8\n\ndata: c\n\nid: 9\u{0}x\ndata: d\n\n";
    let mut parser = SseParser::new();
    let events = push_all(&mut parser, [stream.as_bytes()]);
    // "id: 8" with no data dispatches nothing but moves the last event id; an id holding NUL is ignored.
    assert_eq!(
        events,
        [
            event("message", "a", Some("7")),
            event("message", "b", Some("7")),
            event("message", "c", Some("8")),
            event("message", "d", Some("8")),
        ]
    );
    assert_eq!(parser.last_event_id(), Some("8"));
}

#[test]
fn an_id_takes_effect_only_at_dispatch() {
    let mut parser = SseParser::new();
    assert!(push_all(&mut parser, [&b"id: 4\ndata: half"[..]]).is_empty());
    assert_eq!(parser.last_event_id(), None, "an event cut off by the stream's end never moved the last id");
}

#[test]
fn the_event_type_resets_after_each_dispatch() {
    let stream = "event: put\n\ndata: a\n\nevent: \ndata: b\n\n";
    assert_eq!(parse(stream), [event("message", "a", None), event("message", "b", None)]);
}

#[test]
fn retry_takes_ascii_digits_only() {
    let mut parser = SseParser::new();
    push_all(&mut parser, [&b"retry: 1500\n"[..]]);
    assert_eq!(parser.retry(), Some(Duration::from_millis(1500)));
    for ignored in ["retry: 15s\n", "retry: -1\n", "retry:\n", "retry: 1 5\n", "retry: 99999999999999999999999\n"] {
        push_all(&mut parser, [ignored.as_bytes()]);
        assert_eq!(parser.retry(), Some(Duration::from_millis(1500)), "{ignored:?} was not ignored");
    }
}

#[test]
fn comments_and_unknown_fields_are_ignored() {
    let stream = ": keep-alive\n:\nfoo: bar\nData: x\ndata : y\nevent\ndata: z\n\n";
    assert_eq!(parse(stream), [event("message", "z", None)]);
}

#[test]
fn a_bom_is_skipped_only_at_the_very_start() {
    let mut parser = SseParser::new();
    let events = push_all(&mut parser, [&b"\xEF\xBB"[..], b"\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n"]);
    // The second BOM is in the middle of the stream: part of the field name, which is then unknown.
    assert_eq!(events, [event("message", "a", None)]);
}

#[test]
fn invalid_utf8_is_replaced() {
    let mut parser = SseParser::new();
    let events = push_all(&mut parser, [&b"data: a\xFFb\xE2\x82\n\n"[..]]);
    assert_eq!(events, [event("message", "a\u{FFFD}b\u{FFFD}", None)]);
}

// The caps.

#[test]
fn a_line_longer_than_the_cap_is_an_error() {
    let mut parser = SseParser::with_bytes_max(8);
    // Exactly at the cap, even across chunks: fine.
    assert_eq!(push_all(&mut parser, [&b"data"[..], b": 12\n\n"]), [event("message", "12", None)]);
    // One byte over, across chunks: an error, after the events completed before it in the same chunk.
    assert!(parser.push(b"data: 0\n\ndata:").iter().all(Result::is_ok));
    let pushed = parser.push(b" 1234\n\n");
    assert_eq!(pushed, [Err(SseError::LineTooLong { bytes_max: 8 })]);
    // From then on, the parser refuses everything.
    assert_eq!(parser.push(b"\n\ndata: x\n\n"), [Err(SseError::LineTooLong { bytes_max: 8 })]);
    let message = SseError::LineTooLong { bytes_max: 8 }.to_string();
    assert!(message.contains("8 bytes") && message.contains("drop the connection"), "{message}");
}

#[test]
fn events_before_an_error_are_returned_first() {
    let mut parser = SseParser::with_bytes_max(16);
    let pushed = parser.push(b"id: 1\ndata: a\n\ndata: 0123456789abcdef\n\n");
    assert_eq!(pushed, [Ok(event("message", "a", Some("1"))), Err(SseError::LineTooLong { bytes_max: 16 })]);
    assert_eq!(parser.last_event_id(), Some("1"), "the last id is the one of the last event returned");
}

#[test]
fn an_event_larger_than_the_cap_is_an_error() {
    let mut parser = SseParser::with_bytes_max(8);
    // "123\n" + "456\n" is 8 bytes: at the cap.
    assert_eq!(push_all(&mut parser, [&b"data:123\ndata:456\n\n"[..]]), [event("message", "123\n456", None)]);
    let pushed = parser.push(b"data:123\ndata:456\ndata:\n\n");
    assert_eq!(pushed, [Err(SseError::EventTooLarge { bytes_max: 8 })]);
}

// Any chunking.

/// Pieces of field values: ASCII, a colon, NUL, multi-byte characters, invalid and truncated UTF-8, a BOM.
const PIECES: &[&[u8]] = &[
    b"a",
    b"7",
    b" ",
    b":",
    b"\0",
    "\u{e9}".as_bytes(),
    "\u{20ac}".as_bytes(),
    "\u{1d11e}".as_bytes(),
    b"\xFF",
    b"\xE2\x82",
    b"\xEF\xBB\xBF",
];

/// A line without its ending: blank, a comment, or a field (known or not, with or without its colon and
/// space).
fn arb_line() -> impl Strategy<Value = Vec<u8>> {
    let value = prop::collection::vec(prop::sample::select(PIECES), 0..5).prop_map(|pieces| pieces.concat());
    let names: &[&[u8]] = &[b"data", b"data", b"event", b"id", b"retry", b"", b"other"];
    let field = (prop::sample::select(names), 0..3usize, value).prop_map(|(name, colon, value)| {
        let separator: &[u8] = [&b""[..], b":", b": "][colon];
        [name, separator, &value].concat()
    });
    prop_oneof![2 => Just(Vec::new()), 5 => field]
}

/// A stream: maybe a BOM, lines each with a line ending of any kind, maybe a last line without one.
fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
    let endings: &[&[u8]] = &[b"\n", b"\r", b"\r\n"];
    let lines = prop::collection::vec((arb_line(), prop::sample::select(endings)), 0..24);
    (any::<bool>(), lines, prop::option::of(arb_line())).prop_map(|(bom, lines, last)| {
        let mut stream = if bom { BOM.to_vec() } else { Vec::new() };
        for (line, ending) in lines {
            stream.extend_from_slice(&line);
            stream.extend_from_slice(ending);
        }
        stream.extend_from_slice(&last.unwrap_or_default());
        stream
    })
}

/// What a whole stream parses to: events, last event id, retry.
type Parsed = (Vec<SseEvent>, Option<String>, Option<Duration>);

/// The standard's algorithm over a whole stream at once, written plainly and apart from the parser: decode
/// the whole stream, split all its lines, interpret them.
fn model(stream: &[u8]) -> Parsed {
    let text = String::from_utf8_lossy(stream.strip_prefix(BOM).unwrap_or(stream)).into_owned();
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut current));
            }
            _ => current.push(c),
        }
    }
    let (mut events, mut data, mut kind, mut id_buffer, mut last_id, mut retry) =
        (Vec::new(), Vec::<String>::new(), String::new(), String::new(), String::new(), None);
    for line in lines {
        if line.is_empty() {
            last_id = id_buffer.clone();
            if !data.is_empty() {
                let kind = if kind.is_empty() { "message" } else { &kind };
                let id = (!last_id.is_empty()).then_some(last_id.as_str());
                events.push(event(kind, &data.join("\n"), id));
            }
            data.clear();
            kind.clear();
            continue;
        }
        let (name, value) = match line.find(':') {
            Some(0) => continue,
            Some(at) => (&line[..at], line[at + 1..].strip_prefix(' ').unwrap_or(&line[at + 1..])),
            None => (line.as_str(), ""),
        };
        match name {
            "data" => data.push(value.to_string()),
            "event" => kind = value.to_string(),
            "id" if !value.contains('\0') => id_buffer = value.to_string(),
            "retry" if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) => {
                retry = value.parse().ok().map(Duration::from_millis).or(retry);
            }
            _ => {}
        }
    }
    (events, (!last_id.is_empty()).then_some(last_id), retry)
}

/// What the parser makes of `chunks`.
fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Parsed {
    let mut parser = SseParser::new();
    let events = push_all(&mut parser, chunks);
    (events, parser.last_event_id().map(str::to_string), parser.retry())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Splitting a stream anywhere (inside a CR LF, inside a multi-byte character, into empty chunks) gives the
    /// events of the whole stream, which are the standard's.
    #[test]
    fn sse_parser_handles_any_chunking(
        stream in arb_stream(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let expected = model(&stream);
        prop_assert_eq!(&parse_chunks([stream.as_slice()]), &expected, "whole stream");
        let mut bounds: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
        bounds.extend([0, stream.len()]);
        bounds.sort_unstable();
        let chunks = bounds.windows(2).map(|pair| &stream[pair[0]..pair[1]]);
        prop_assert_eq!(&parse_chunks(chunks), &expected, "cut at {:?}", bounds);
        prop_assert_eq!(&parse_chunks(stream.chunks(1)), &expected, "byte by byte");
    }
}
