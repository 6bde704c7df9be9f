//! `tally-client`: an async client for a Tally cluster (see `docs/http-api.md`).
#![deny(missing_docs)]
