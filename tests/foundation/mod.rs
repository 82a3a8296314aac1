mod catalog;
mod errors;
mod init;
mod migrations;
mod roles;
mod startup;
mod transactions;
