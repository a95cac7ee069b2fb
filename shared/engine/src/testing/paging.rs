//! Cursor paging for the fakes: a page token names the listing and the last key returned.

use crate::error::{Error, InvalidInput, Result};
use crate::model::{Page, PageRequest, PageToken};

/// Pages `items` (already in listing order, keys strictly monotonic in that order) after the
/// request's cursor. `descending` says which way the keys run.
pub(crate) fn page<T>(
    listing: &str,
    items: Vec<(String, T)>,
    request: &PageRequest,
    descending: bool,
) -> Result<Page<T>> {
    let after = match &request.cursor {
        None => None,
        Some(token) => Some(
            token
                .as_str()
                .strip_prefix(listing)
                .and_then(|rest| rest.strip_prefix('|'))
                .ok_or(Error::Invalid(InvalidInput::Cursor))?
                .to_owned(),
        ),
    };
    let mut rest = items
        .into_iter()
        .filter(|(key, _)| match &after {
            None => true,
            Some(after) if descending => key < after,
            Some(after) => key > after,
        })
        .peekable();
    let mut page_items = Vec::new();
    let mut last_key = None;
    while page_items.len() < request.limit() {
        let Some((key, item)) = rest.next() else {
            break;
        };
        page_items.push(item);
        last_key = Some(key);
    }
    let next = match (rest.peek(), last_key) {
        (Some(_), Some(key)) => Some(PageToken::new(format!("{listing}|{key}"))),
        _ => None,
    };
    Ok(Page {
        items: page_items,
        next,
    })
}
