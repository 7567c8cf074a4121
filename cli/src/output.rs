//! Plain-text tables in kubectl's layout: left-aligned columns separated by
//! three spaces, no trailing blanks, so `kubectl deadbolt ls` reads like `kubectl get`.

/// What an empty cell shows, as in `kubectl get`.
pub const NONE: &str = "<none>";

/// Renders `headers` and `rows` as an aligned table, one line per row, each ending in `\n`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| width(header)).collect();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            if let Some(max) = widths.get_mut(column) {
                *max = (*max).max(width(cell));
            }
        }
    }
    let mut text = String::new();
    let header_row: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate().take(widths.len()) {
            if column > 0 {
                line.push_str("   ");
            }
            line.push_str(cell);
            let pad = widths[column].saturating_sub(width(cell));
            line.extend(std::iter::repeat_n(' ', pad));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// A cell's display width; characters, which is right for the ASCII names and targets locks hold.
fn width(cell: &str) -> usize {
    cell.chars().count()
}

/// Makes free text (a lock message) safe for one table cell: control characters
/// such as newlines and tabs would break the layout, so they become spaces.
pub fn cell(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect();
    if cleaned.trim().is_empty() {
        NONE.to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_like_kubectl() {
        let text = table(
            &["NAME", "TARGET"],
            &[
                vec!["a".into(), "User:\"alice\"".into()],
                vec!["longer-name".into(), "Role:\"dev\"".into()],
            ],
        );
        assert_eq!(
            text,
            "NAME          TARGET\na             User:\"alice\"\nlonger-name   Role:\"dev\"\n"
        );
    }

    #[test]
    fn cells_lose_control_characters() {
        assert_eq!(cell("a\nb\tc"), "a b c");
        assert_eq!(cell(""), NONE);
        assert_eq!(cell("\n"), NONE);
    }
}
