//! Alerts and budgets (issue 22): hookwatch tells people when agents burn money, fail or get
//! stuck. `rules` reads and checks the rule file.

pub mod rules;
