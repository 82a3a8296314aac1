//! What ops deploy and watch, checked without a Docker engine: the compose file and its
//! environment, the alert rules (promtool), the dashboard.

mod compose;
mod rules;
