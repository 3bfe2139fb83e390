//! Alerts and budgets (issue 22): hookwatch tells people when agents burn money, fail or get
//! stuck. `rules` reads and checks the rule file (`--alerts`); `engine` evaluates the rules
//! on a tick and soon after commits, from rollups and live state, and keeps each episode in the store; `delivery`
//! takes each firing and resolution to its webhooks and commands.

pub(crate) mod delivery;
pub mod engine;
pub(crate) mod rules;
