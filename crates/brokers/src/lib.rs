//! Service brokers: the Open Service Broker API 2.x client the Cloud
//! Controller uses to talk to brokers (`osb`), and the built-in brokers
//! Ingot ships (`postgres`).

pub mod osb;
pub mod postgres;
