//! STUB (replaced by the template branch).
#![allow(dead_code, unused_variables)]
use crate::template::{self, Reference};
pub struct Condition;
pub fn parse(text: &str) -> Result<Condition, Vec<template::Error>> {
    Ok(Condition)
}
impl Condition {
    pub fn references(&self) -> Vec<(&Reference, std::ops::Range<usize>)> {
        vec![]
    }
}
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Type {
    String,
    Number,
    Bool,
    Status,
    Array,
    Any,
}
pub fn check(c: &Condition, type_of: &dyn Fn(&Reference) -> Type) -> Vec<template::Error> {
    vec![]
}
pub fn eval(c: &Condition, values: &dyn template::Values) -> Result<bool, String> {
    Ok(true)
}
