//! Turning tokens into dollars.
//!
//! Prices are USD per million tokens, per model: Anthropic's for Claude Code, OpenAI's for
//! Codex CLI and Google's for Gemini CLI, whose telemetry reports tokens and no cost (each
//! group's source is written beside it; `--prices` overrides any). Money is kept as integer
//! nano-dollars so that rollups can add and subtract contributions exactly; the API shows
//! dollars as floats.
//! A model is matched by the longest table key contained in its name (so dated ids such as
//! `claude-sonnet-4-5-20250929` and provider-prefixed ids match), then by family.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::event::TokenUsage;

/// Prices in USD per million tokens.
/// Read from the `--prices` file.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_write: f64,
    #[serde(default)]
    pub cache_read: f64,
}

const fn price(input: f64, output: f64, cache_write: f64, cache_read: f64) -> ModelPrice {
    ModelPrice {
        input,
        output,
        cache_write,
        cache_read,
    }
}

/// Anthropic's list prices (standard tier, 5-minute cache writes).
const DEFAULT_PRICES: &[(&str, ModelPrice)] = &[
    ("claude-opus-4-6", price(5.0, 25.0, 6.25, 0.50)),
    ("claude-opus-4-5", price(5.0, 25.0, 6.25, 0.50)),
    ("claude-opus-4-1", price(15.0, 75.0, 18.75, 1.50)),
    ("claude-opus-4", price(15.0, 75.0, 18.75, 1.50)),
    ("claude-3-opus", price(15.0, 75.0, 18.75, 1.50)),
    ("claude-sonnet-4-6", price(3.0, 15.0, 3.75, 0.30)),
    ("claude-sonnet-4-5", price(3.0, 15.0, 3.75, 0.30)),
    ("claude-sonnet-4", price(3.0, 15.0, 3.75, 0.30)),
    ("claude-3-7-sonnet", price(3.0, 15.0, 3.75, 0.30)),
    ("claude-3-5-sonnet", price(3.0, 15.0, 3.75, 0.30)),
    ("claude-haiku-4-5", price(1.0, 5.0, 1.25, 0.10)),
    ("claude-3-5-haiku", price(0.80, 4.0, 1.0, 0.08)),
    ("claude-3-haiku", price(0.25, 1.25, 0.30, 0.03)),
    // OpenAI's list prices for the models Codex CLI runs (standard tier, per million tokens:
    // input, output, no cache writes, cached input), from platform.openai.com/docs/pricing as
    // published in 2025. Reasoning tokens are output tokens (and counted in them).
    ("gpt-5.1-codex-mini", price(0.25, 2.0, 0.0, 0.025)),
    ("gpt-5.1-codex", price(1.25, 10.0, 0.0, 0.125)),
    ("gpt-5.1", price(1.25, 10.0, 0.0, 0.125)),
    ("gpt-5-codex", price(1.25, 10.0, 0.0, 0.125)),
    ("gpt-5-mini", price(0.25, 2.0, 0.0, 0.025)),
    ("gpt-5-nano", price(0.05, 0.40, 0.0, 0.005)),
    ("gpt-5", price(1.25, 10.0, 0.0, 0.125)),
    ("codex-mini-latest", price(1.50, 6.0, 0.0, 0.375)),
    ("gpt-4.1-mini", price(0.40, 1.60, 0.0, 0.10)),
    ("gpt-4.1-nano", price(0.10, 0.40, 0.0, 0.025)),
    ("gpt-4.1", price(2.0, 8.0, 0.0, 0.50)),
    ("gpt-4o-mini", price(0.15, 0.60, 0.0, 0.075)),
    ("gpt-4o", price(2.50, 10.0, 0.0, 1.25)),
    ("o4-mini", price(1.10, 4.40, 0.0, 0.275)),
    // Google's list prices for the models Gemini CLI runs (Gemini API, paid tier, prompts of
    // at most 200k tokens; longer prompts cost more and are priced at this tier: override with
    // `--prices`), from ai.google.dev/gemini-api/docs/pricing as published in 2025: input,
    // output (thinking tokens are billed as output), no cache writes (storage is billed by
    // the hour, not per request), cached input.
    ("gemini-3-pro", price(2.0, 12.0, 0.0, 0.20)),
    ("gemini-2.5-pro", price(1.25, 10.0, 0.0, 0.125)),
    ("gemini-2.5-flash-lite", price(0.10, 0.40, 0.0, 0.01)),
    ("gemini-2.5-flash", price(0.30, 2.50, 0.0, 0.03)),
    ("gemini-2.0-flash-lite", price(0.075, 0.30, 0.0, 0.0)),
    ("gemini-2.0-flash", price(0.10, 0.40, 0.0, 0.025)),
];

/// Used when a model is unknown or not reported: the newest model of each family.
const FAMILY_FALLBACKS: &[(&str, &str)] = &[
    ("opus", "claude-opus-4-5"),
    ("sonnet", "claude-sonnet-4-5"),
    ("haiku", "claude-haiku-4-5"),
    ("codex", "gpt-5-codex"),
    ("gpt", "gpt-5"),
    ("gemini", "gemini-2.5-pro"),
];

/// The model assumed when usage arrives with no model at all (Claude Code's default).
pub(crate) const DEFAULT_MODEL: &str = "claude-sonnet-4-5";

#[derive(Debug, Clone)]
pub struct PriceTable {
    prices: BTreeMap<String, ModelPrice>,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self {
            prices: DEFAULT_PRICES
                .iter()
                .map(|(model, price)| ((*model).to_owned(), *price))
                .collect(),
        }
    }
}

impl PriceTable {
    /// The default table with the user's entries added or replacing defaults.
    pub fn with_overrides(overrides: BTreeMap<String, ModelPrice>) -> Self {
        let mut table = Self::default();
        for (model, price) in overrides {
            table.prices.insert(model.to_lowercase(), price);
        }
        table
    }

    pub(crate) fn price_for(&self, model: Option<&str>) -> ModelPrice {
        let model = model.unwrap_or(DEFAULT_MODEL).to_lowercase();
        let best = self
            .prices
            .iter()
            .filter(|(key, _)| model.contains(key.as_str()))
            .max_by_key(|(key, _)| key.len());
        if let Some((_, price)) = best {
            return *price;
        }
        let family = FAMILY_FALLBACKS
            .iter()
            .find(|(family, _)| model.contains(family))
            .map(|(_, fallback)| *fallback)
            .unwrap_or(DEFAULT_MODEL);
        self.prices
            .get(family)
            .copied()
            .unwrap_or(price(3.0, 15.0, 3.75, 0.30))
    }

    /// The cost of `usage` on `model`, in nano-dollars.
    pub(crate) fn cost_nanos(&self, model: Option<&str>, usage: &TokenUsage) -> i64 {
        let p = self.price_for(model);
        // USD per million tokens == micro-dollars per token == 1000 nano-dollars per token.
        let per_token = |usd_per_mtok: f64| (usd_per_mtok * 1000.0).round() as i64;
        // Saturating: counts are bounded at the edge, and a cost never wraps whatever comes.
        usage
            .input
            .saturating_mul(per_token(p.input))
            .saturating_add(usage.output.saturating_mul(per_token(p.output)))
            .saturating_add(
                usage
                    .cache_creation
                    .saturating_mul(per_token(p.cache_write)),
            )
            .saturating_add(usage.cache_read.saturating_mul(per_token(p.cache_read)))
    }
}

pub(crate) fn nanos_to_usd(nanos: i64) -> f64 {
    nanos as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_and_prefixed_ids_match_the_longest_key() {
        let table = PriceTable::default();
        assert_eq!(
            table.price_for(Some("claude-opus-4-1-20250805")).input,
            15.0
        );
        assert_eq!(table.price_for(Some("claude-opus-4-5-20251101")).input, 5.0);
        assert_eq!(
            table
                .price_for(Some("us.anthropic.claude-haiku-4-5-20251001-v1:0"))
                .output,
            5.0
        );
        assert_eq!(table.price_for(Some("opus")).input, 5.0);
        assert_eq!(table.price_for(Some("gpt-5-codex")).input, 1.25);
        assert_eq!(table.price_for(Some("gpt-5-mini")).input, 0.25);
        assert_eq!(table.price_for(Some("gemini-2.5-flash-lite")).output, 0.40);
        assert_eq!(table.price_for(Some("gemini-2.5-flash")).output, 2.50);
        assert_eq!(
            table
                .price_for(Some("models/gemini-2.5-pro-preview-06-05"))
                .input,
            1.25
        );
        // A model the table does not know is priced as its family's newest.
        assert_eq!(table.price_for(Some("gemini-9-ultra")).input, 1.25);
        assert_eq!(table.price_for(Some("gpt-7")).output, 10.0);
        assert_eq!(table.price_for(None).input, 3.0);
    }

    #[test]
    fn cost_is_exact_in_nanodollars() {
        let usage = TokenUsage {
            input: 1_000_000,
            output: 1_000_000,
            cache_creation: 1_000_000,
            cache_read: 1_000_000,
        };
        let cost = PriceTable::default().cost_nanos(Some("claude-sonnet-4-5"), &usage);
        assert_eq!(cost, (3_000 + 15_000 + 3_750 + 300) * 1_000_000);
        assert_eq!(nanos_to_usd(cost), 22.05);
    }

    #[test]
    fn overrides_replace_defaults() {
        let mut overrides = BTreeMap::new();
        overrides.insert("claude-sonnet-4-5".to_owned(), price(1.0, 2.0, 0.0, 0.0));
        let table = PriceTable::with_overrides(overrides);
        assert_eq!(table.price_for(Some("claude-sonnet-4-5-2025")).output, 2.0);
    }
}
