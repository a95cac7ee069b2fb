//! Paging: every listing port takes an opaque [`PageToken`] and a limit and returns a [`Page`].

use serde::{Deserialize, Serialize};

/// An opaque continuation token produced by a store; callers pass it back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PageToken(String);

impl PageToken {
    /// Wraps a token (as received from a client or produced by a store).
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Default page size when a caller does not say.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// Largest page size a store is asked for.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// Where a page starts and how many items it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// `None` for the first page.
    pub cursor: Option<PageToken>,
    /// Maximum number of items, clamped to `1..=MAX_PAGE_LIMIT`.
    pub limit: u32,
}

impl PageRequest {
    /// The first page with `limit` items at most.
    #[must_use]
    pub fn first(limit: u32) -> Self {
        Self {
            cursor: None,
            limit: limit.clamp(1, MAX_PAGE_LIMIT),
        }
    }

    /// The page after `cursor`.
    #[must_use]
    pub fn after(cursor: PageToken, limit: u32) -> Self {
        Self {
            cursor: Some(cursor),
            limit: limit.clamp(1, MAX_PAGE_LIMIT),
        }
    }

    /// The effective limit (clamped), as `usize`.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE_LIMIT) as usize
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::first(DEFAULT_PAGE_LIMIT)
    }
}

/// One page of results; `next` is `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items of this page, in the listing's order.
    pub items: Vec<T>,
    /// Token for the next page, if there may be more.
    pub next: Option<PageToken>,
}
