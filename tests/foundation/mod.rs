mod catalog;
mod errors;
mod migrations;
mod roles;
mod startup;
mod transactions;
