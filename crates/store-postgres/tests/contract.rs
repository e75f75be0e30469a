//! The storage contract, on a fresh PostgreSQL schema per test.
//!
//! Set STEWARD_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it;
//! without it the cases are skipped, except in CI where they fail.

mod common;

use common::fresh;

store::contract_tests!(fresh);
