//! Tooling apart from the product: the machine simulator (`nephrocare simulate`), the
//! labelled alarm corpus, the demo data set (`nephrocare seed demo`) and the benchmarks
//! (`nephrocare bench`, `bench/run.sh`). Only the command line reaches it (those commands);
//! the product (`app`, `config`, `bootstrap`) never does.

pub mod bench;
pub mod corpus;
pub mod demo;
pub mod simulate;
