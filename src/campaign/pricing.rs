//! `[pricing]`: an optional rate table, so that a batch's conversation categories
//! (`conversation.initiateType`) become an estimated cost. One currency; a price per
//! category, and optionally other prices for numbers starting with a country calling
//! code (the longest matching one that prices the category wins). It is an estimate: innohook counts each
//! message with a category once, at the rate given here; the invoice is InnoPaaS's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The rate table as configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// The currency the prices are in ("USD"); required with any price.
    pub currency: Option<String>,
    /// Price per message, by category (`business_initiated`, `customer_initiated`,
    /// `referral_conversion`).
    pub prices: BTreeMap<String, f64>,
    /// Prices for numbers starting with a calling code (1 to 4 digits), by category: the
    /// longest code that prices a message's category gives its price, else `prices`.
    pub prefixes: BTreeMap<String, BTreeMap<String, f64>>,
}

impl PricingConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        let priced = !self.prices.is_empty() || !self.prefixes.is_empty();
        anyhow::ensure!(
            !priced
                || self
                    .currency
                    .as_deref()
                    .is_some_and(|c| !c.trim().is_empty()),
            "pricing: prices are given without a currency; add currency = \"USD\" (or yours)"
        );
        for (prefix, prices) in &self.prefixes {
            anyhow::ensure!(
                (1..=4).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_digit()),
                "pricing.prefixes: {prefix:?} is not a calling code; write 1 to 4 digits, such as \"91\" or \"1876\""
            );
            for (category, price) in prices {
                check_price(&format!("pricing.prefixes.{prefix}.{category}"), *price)?;
            }
        }
        for (category, price) in &self.prices {
            check_price(&format!("pricing.prices.{category}"), *price)?;
        }
        Ok(())
    }

    /// Whether a rate table is configured.
    pub fn is_set(&self) -> bool {
        self.currency.is_some() && (!self.prices.is_empty() || !self.prefixes.is_empty())
    }

    /// The price of one message of `category` sent to a number starting with `prefix`
    /// (its first digits), if there is one: that of the longest calling code that prices
    /// the category, else the category's own.
    pub fn price(&self, category: &str, prefix: &str) -> Option<f64> {
        self.prefixes
            .iter()
            .filter(|(p, _)| prefix.starts_with(p.as_str()))
            .filter_map(|(p, prices)| Some((p.len(), prices.get(category)?)))
            .max_by_key(|(len, _)| *len)
            .map(|(_, price)| price)
            .or_else(|| self.prices.get(category))
            .copied()
    }

    /// The estimate for counts by (category, prefix).
    pub fn estimate<'a>(&self, counts: impl IntoIterator<Item = (&'a str, &'a str, i64)>) -> Cost {
        let mut cost = Cost {
            currency: self.currency.clone().unwrap_or_default(),
            estimate: 0.0,
            unpriced: 0,
            is_estimate: true,
        };
        for (category, prefix, n) in counts {
            match self.price(category, prefix) {
                Some(price) => cost.estimate += price * n as f64,
                None => cost.unpriced += n,
            }
        }
        // Money is shown to the 1/10,000: the sum of many small prices carries float noise.
        cost.estimate = (cost.estimate * 10_000.0).round() / 10_000.0;
        cost
    }
}

fn check_price(key: &str, price: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        price.is_finite() && price >= 0.0,
        "{key}: {price} is not a price; write a number of at least 0"
    );
    Ok(())
}

/// A batch's estimated cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    pub currency: String,
    /// The sum of each categorised message's price.
    pub estimate: f64,
    /// Messages of a category the table has no price for (not in `estimate`).
    pub unpriced: i64,
    /// Always true: this is innohook's arithmetic, not InnoPaaS's invoice.
    pub is_estimate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PricingConfig {
        toml_like(&[
            ("business_initiated", None, 0.05),
            ("customer_initiated", None, 0.0),
            ("business_initiated", Some("91"), 0.01),
            ("business_initiated", Some("1876"), 0.07),
            ("customer_initiated", Some("1"), 0.02),
        ])
    }

    fn toml_like(rows: &[(&str, Option<&str>, f64)]) -> PricingConfig {
        let mut p = PricingConfig {
            currency: Some("USD".into()),
            ..Default::default()
        };
        for (category, prefix, price) in rows {
            match prefix {
                None => p.prices.insert(category.to_string(), *price),
                Some(prefix) => p
                    .prefixes
                    .entry(prefix.to_string())
                    .or_default()
                    .insert(category.to_string(), *price),
            };
        }
        p
    }

    #[test]
    fn the_longest_prefix_with_a_price_for_the_category_wins() {
        let p = table();
        assert_eq!(p.price("business_initiated", "9198"), Some(0.01));
        assert_eq!(p.price("business_initiated", "1876"), Some(0.07));
        // "1" has no business price: the default applies.
        assert_eq!(p.price("business_initiated", "1212"), Some(0.05));
        assert_eq!(p.price("customer_initiated", "1212"), Some(0.02));
        // "1876" prices only business: its customer-initiated price is that of "1".
        assert_eq!(p.price("customer_initiated", "1876"), Some(0.02));
        assert_eq!(p.price("referral_conversion", "6512"), None);
        let cost = p.estimate([
            ("business_initiated", "9198", 100),
            ("business_initiated", "6512", 10),
            ("referral_conversion", "6512", 3),
        ]);
        assert_eq!((cost.estimate, cost.unpriced), (1.5, 3));
    }

    #[test]
    fn a_table_without_currency_or_with_a_bad_prefix_is_refused() {
        let mut p = table();
        p.currency = None;
        assert!(p.check().unwrap_err().to_string().contains("currency"));
        let mut p = table();
        p.prefixes.insert("+91".into(), BTreeMap::new());
        assert!(p.check().unwrap_err().to_string().contains("calling code"));
        let mut p = table();
        p.prices.insert("x".into(), -1.0);
        assert!(p.check().is_err());
        assert!(table().check().is_ok());
        assert!(PricingConfig::default().check().is_ok());
    }
}
