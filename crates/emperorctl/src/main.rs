//! emperorctl: the command-line client of the emperor (work in progress).

fn main() {}
