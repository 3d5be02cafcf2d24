//! The national indicators: the catalogue (each indicator declared once) and the
//! engine that computes them over the lake's detail zone and publishes releases into
//! the statistical base.

pub mod analyst;
pub mod catalogue;
mod changes;
pub mod closing;
pub mod compute;
pub mod firsts;
mod incremental;
pub mod quantiles;
pub mod suppression;

pub use catalogue::{CATALOGUE, CATALOGUE_VERSION, Disclosure, Indicator, by_id};
pub use compute::{ComputeError, ComputeOptions, Publication, Release, publish, publish_as};
