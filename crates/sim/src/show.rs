//! Readable reports: keys and values are byte vectors, which `Debug` prints as lists of numbers
//! (`[116, 49]`); [`readable`] turns every such list of printable ASCII into a quoted string (`"t1"`).

/// `debug` (a `Debug` rendering) with every non-empty list of numbers that are all printable ASCII bytes
/// written as a quoted string instead. Other lists (empty, or holding anything else) are left as they are.
pub fn readable(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let text = after.find(']').and_then(|close| Some((ascii(&after[..close])?, close)));
        match text {
            Some((text, close)) => {
                out.push_str(&format!("{text:?}"));
                rest = &after[close + 1..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text that `list` (the inside of `[...]`) spells, if it is a non-empty list of printable ASCII bytes.
fn ascii(list: &str) -> Option<String> {
    let bytes: Vec<u8> = list.split(", ").map(|number| number.parse::<u8>().ok()).collect::<Option<_>>()?;
    bytes.iter().all(|byte| (0x20..0x7f).contains(byte)).then(|| bytes.iter().map(|&byte| char::from(byte)).collect())
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn printable_byte_lists_become_strings_and_the_rest_stays() {
        // Why: a violation must name keys and values as people write them, without garbling anything else.
        let debug = "Get { key: [116, 49] } [] [(1, 2)] [0, 1] [300] results: [Put { value: [49, 47, 99] }]";
        let expected = "Get { key: \"t1\" } [] [(1, 2)] [0, 1] [300] results: [Put { value: \"1/c\" }]";
        assert_eq!(readable(debug), expected);
    }
}
