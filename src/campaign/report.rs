//! A batch's figures, as the API, the dashboard and `innohook batch` show them: one
//! struct, so that one name is one number everywhere.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Settings;
use super::pricing::Cost;
use crate::event::tracking::Batch;
use crate::store::{SendFigures, Store, StoreResult};

/// A batch summary with everything known about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchReport {
    /// The status counters: messages, reached, delivered, read, failed, other, readRate,
    /// failures, firstEventAt, lastEventAt.
    #[serde(flatten)]
    pub batch: Batch,
    /// Messages answered (a reply or a reaction to them), and replied / messages.
    pub replied: i64,
    pub reply_rate: f64,
    /// Whether any send of this batch was listed; without a list, the figures below are
    /// null: innohook knows only the messages it had a status report for.
    pub send_list: bool,
    pub sent: Option<i64>,
    pub no_status: Option<i64>,
    pub unconfirmed: Option<i64>,
    /// reached / sent.
    pub delivery_rate: Option<f64>,
    /// `[tracking] unconfirmed_after`, in seconds.
    pub unconfirmed_after_secs: u64,
    /// Messages by conversation category (`conversation.initiateType`), the most first.
    pub categories: Vec<CategoryCount>,
    /// The estimated cost, with a `[pricing]` table (else null).
    pub cost: Option<Cost>,
}

/// How many of a batch's messages had a conversation of this category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryCount {
    pub category: String,
    pub messages: i64,
}

/// `part / whole`, 0 for an empty whole.
pub fn rate(part: i64, whole: i64) -> f64 {
    if whole > 0 {
        part as f64 / whole as f64
    } else {
        0.0
    }
}

impl BatchReport {
    /// The figures from what the store counted. A batch known only from its send list
    /// has zero messages, and its sends' times as its first and last event.
    pub fn new(
        uid: &str,
        batch: Option<Batch>,
        replied: i64,
        sends: SendFigures,
        categories: &[(String, String, i64)],
        settings: &Settings,
    ) -> Option<Self> {
        let batch = match (batch, sends.first_sent_at, sends.last_sent_at) {
            (Some(b), _, _) => b,
            (None, Some(first), Some(last)) if sends.listed > 0 => {
                Batch::new(uid.to_owned(), [0; 5], Vec::new(), first, last)
            }
            _ => return None,
        };
        let listed = sends.listed > 0;
        // What was listed, and every message reported on in this batch that was not
        // listed in it: a message with a status report was sent, listed or not. (A listed
        // send whose reports name another batch, or none, counts here as sent, and in
        // that batch's figures by its reports.)
        let sent = sends.listed + batch.messages - sends.reported_here;
        let when_listed = |v| listed.then_some(v);
        Some(Self {
            replied,
            reply_rate: rate(replied, batch.messages),
            send_list: listed,
            sent: when_listed(sent),
            no_status: when_listed(sends.no_status),
            unconfirmed: when_listed(sends.unconfirmed),
            delivery_rate: listed.then(|| rate(batch.reached, sent)),
            unconfirmed_after_secs: settings.unconfirmed_after.as_secs(),
            categories: by_category(categories),
            cost: settings.pricing.is_set().then(|| {
                let counts = categories
                    .iter()
                    .map(|(c, p, n)| (c.as_str(), p.as_str(), *n));
                settings.pricing.estimate(counts)
            }),
            batch,
        })
    }
}

/// Counts by (category, prefix) summed by category, the most first.
fn by_category(counts: &[(String, String, i64)]) -> Vec<CategoryCount> {
    let mut sums: std::collections::BTreeMap<&str, i64> = Default::default();
    for (category, _, n) in counts {
        *sums.entry(category).or_default() += n;
    }
    let mut all: Vec<CategoryCount> = sums
        .into_iter()
        .map(|(category, messages)| CategoryCount {
            category: category.to_owned(),
            messages,
        })
        .collect();
    all.sort_by(|a, b| {
        b.messages
            .cmp(&a.messages)
            .then(a.category.cmp(&b.category))
    });
    all
}

/// A batch's report as of `now` (`None`: neither a status report nor a send of it).
pub async fn batch(
    store: &dyn Store,
    uid: &str,
    settings: &Settings,
    now: DateTime<Utc>,
) -> StoreResult<Option<BatchReport>> {
    let (batch, replied, sends, categories) = tokio::join!(
        store.batch(uid),
        store.replied(uid),
        store.send_figures(uid, settings.cutoff(now)),
        store.batch_categories(uid),
    );
    let categories = categories?;
    Ok(BatchReport::new(
        uid,
        batch?,
        replied?,
        sends?,
        &categories,
        settings,
    ))
}
