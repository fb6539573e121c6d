//! Svix cursor pagination: `limit`, `iterator`, answered with `data`, `iterator`,
//! `prevIterator` and `done`.
//!
//! Ids are time-ordered and compared bytewise, so an id is a stable cursor: "the page
//! after X" is `WHERE id > X ORDER BY id LIMIT n+1` (or `<` for descending lists), and the
//! extra row tells whether this is the last page. `prevIterator` is `-` + the first id: an
//! iterator starting with `-` walks back from there.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ValidationErrorItem};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 250;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    Ascending,
    Descending,
}

/// The page of a list to return.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many items to return.
    #[param(minimum = 1, maximum = 250)]
    pub limit: Option<i64>,
    /// The `iterator` (or `prevIterator`) of a page this list returned.
    #[param(max_length = 300)]
    pub iterator: Option<String>,
    /// The list's order; each list has its own default.
    #[param(inline)]
    pub order: Option<Ordering>,
}

/// A validated page request, ready for SQL.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: i64,
    /// Rows strictly after (in the walking direction) this id.
    pub after: Option<String>,
    /// The walking direction in SQL terms: true for `ORDER BY id DESC`.
    pub descending: bool,
    /// The caller asked for the page before the cursor; rows are reversed before answering.
    pub backwards: bool,
}

impl Page {
    pub fn new(q: &PageQuery, default_order: Ordering) -> Result<Page, ApiError> {
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::Validation(vec![ValidationErrorItem::query(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            )]));
        }
        let order = q.order.unwrap_or(default_order);
        let (after, backwards) = match q.iterator.as_deref().filter(|s| !s.is_empty()) {
            Some(it) => match it.strip_prefix('-') {
                Some(rest) => (Some(rest.to_string()), true),
                None => (Some(it.to_string()), false),
            },
            None => (None, false),
        };
        let descending = (order == Ordering::Descending) != backwards;
        Ok(Page {
            limit,
            after,
            descending,
            backwards,
        })
    }

    /// Appends the cursor condition (`AND id > $n`, or `<` walking down) and the order and
    /// limit to a query whose `WHERE` clause is open.
    pub fn push_to(&self, qb: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>, column: &str) {
        if let Some(after) = &self.after {
            qb.push(format!(
                " AND {column} {} ",
                if self.descending { "<" } else { ">" }
            ))
            .push_bind(after.clone());
        }
        qb.push(self.order_clause(column));
    }

    /// `AND id > $n` or `AND id < $n` for the walking direction, or nothing.
    pub fn cursor_clause(&self, column: &str, param: usize) -> String {
        match self.after {
            Some(_) => format!(
                " AND {column} {} ${param}",
                if self.descending { "<" } else { ">" }
            ),
            None => String::new(),
        }
    }

    pub fn order_clause(&self, column: &str) -> String {
        format!(
            " ORDER BY {column} {} LIMIT {}",
            if self.descending { "DESC" } else { "ASC" },
            self.limit + 1
        )
    }
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<T> {
    pub data: Vec<T>,
    pub iterator: Option<String>,
    pub prev_iterator: Option<String>,
    pub done: bool,
}

impl<T> ListResponse<T> {
    /// Builds the answer from up to `limit + 1` rows fetched in the walking direction.
    pub fn from_rows(mut rows: Vec<T>, page: &Page, id: impl Fn(&T) -> String) -> ListResponse<T> {
        let more = rows.len() as i64 > page.limit;
        rows.truncate(page.limit as usize);
        if page.backwards {
            rows.reverse();
        }
        let iterator = rows.last().map(&id);
        let prev_iterator = rows.first().map(|r| format!("-{}", id(r)));
        // Walking back, "done" means there is nothing further back; the forward iterator
        // still continues from this page.
        let done = if page.backwards { false } else { !more };
        ListResponse {
            data: rows,
            iterator,
            prev_iterator,
            done,
        }
    }

    /// The same page with each item turned into another shape.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> ListResponse<U> {
        ListResponse {
            data: self.data.into_iter().map(f).collect(),
            iterator: self.iterator,
            prev_iterator: self.prev_iterator,
            done: self.done,
        }
    }

    /// The same with a conversion that can fail (the first failure is the answer).
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<ListResponse<U>, E> {
        Ok(ListResponse {
            data: self.data.into_iter().map(f).collect::<Result<_, E>>()?,
            iterator: self.iterator,
            prev_iterator: self.prev_iterator,
            done: self.done,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: Option<i64>, iterator: Option<&str>) -> PageQuery {
        PageQuery {
            limit,
            iterator: iterator.map(String::from),
            order: None,
        }
    }

    #[test]
    fn limits_are_checked() {
        assert!(Page::new(&q(Some(0), None), Ordering::Ascending).is_err());
        assert!(Page::new(&q(Some(251), None), Ordering::Ascending).is_err());
        assert_eq!(
            Page::new(&q(None, None), Ordering::Ascending)
                .unwrap()
                .limit,
            50
        );
    }

    #[test]
    fn pages_carry_cursors_and_done() {
        let page = Page::new(&q(Some(2), None), Ordering::Ascending).unwrap();
        let r = ListResponse::from_rows(vec!["a", "b", "c"], &page, |s| s.to_string());
        assert_eq!(
            (r.data.clone(), r.iterator.as_deref(), r.done),
            (vec!["a", "b"], Some("b"), false)
        );
        let r = ListResponse::from_rows(vec!["a"], &page, |s| s.to_string());
        assert!(r.done);
        let back = Page::new(&q(Some(2), Some("-c")), Ordering::Ascending).unwrap();
        assert!(back.descending && back.backwards);
        assert_eq!(back.cursor_clause("id", 1), " AND id < $1");
        let r = ListResponse::from_rows(vec!["b", "a"], &back, |s| s.to_string());
        assert_eq!(r.data, vec!["a", "b"]);
    }
}
