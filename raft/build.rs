// Code generation for proto/ arrives with the replication issue.
fn main() {}
