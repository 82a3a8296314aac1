//! The subset of Airtable's formula language that filterByFormula and formula fields need:
//! literals, `{field}` references, `= != <> < > <= >= & + - * /`, and the functions listed in
//! [`call`]. Anything else is rejected when parsing (422 INVALID_FILTER_BY_FORMULA), never
//! silently matched.

mod parse;

use crate::model::{
    field::{class_of, parse_datetime, Class},
    table::{Record, Table},
};
use chrono::{DateTime, Datelike, SubsecRound, Utc};
use parse::{Expr, Op};
use serde_json::{json, Value};

pub use parse::parse;

/// A formula that cannot be used: bad syntax, unknown function or field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// A formula value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Num(f64),
    Str(String),
    Bool(bool),
    Date(DateTime<Utc>),
    Blank,
    Arr(Vec<V>),
}

/// A runtime error (#ERROR!): the record does not match.
#[derive(Debug)]
pub struct EvalError;

type R = Result<V, EvalError>;

impl V {
    pub fn truthy(&self) -> bool {
        match self {
            V::Num(n) => *n != 0.0 && !n.is_nan(),
            V::Str(s) => !s.is_empty(),
            V::Bool(b) => *b,
            V::Date(_) => true,
            V::Blank => false,
            V::Arr(a) => !a.is_empty(),
        }
    }

    fn text(&self) -> String {
        match self {
            V::Num(n) => fmt_num(*n),
            V::Str(s) => s.clone(),
            V::Bool(b) => {
                if *b {
                    "1".into()
                } else {
                    "0".into()
                }
            }
            V::Date(d) => crate::clock::iso(*d),
            V::Blank => String::new(),
            V::Arr(a) => a.iter().map(V::text).collect::<Vec<_>>().join(", "),
        }
    }

    fn num(&self) -> Option<f64> {
        match self {
            V::Num(n) => Some(*n),
            V::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            V::Blank => Some(0.0),
            V::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn date(&self) -> Option<DateTime<Utc>> {
        match self {
            V::Date(d) => Some(*d),
            V::Str(s) => parse_datetime(s),
            _ => None,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            V::Num(n) => json!(n),
            V::Str(s) => json!(s),
            V::Bool(b) => json!(b),
            V::Date(d) => json!(crate::clock::iso(*d)),
            V::Blank => Value::Null,
            V::Arr(a) => Value::Array(a.iter().map(V::to_json).collect()),
        }
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// A cell as a formula sees it.
fn cell_value(table: &Table, record: &Record, field_id: &str) -> V {
    let Some(field) = table.fields.iter().find(|f| f.id == field_id) else { return V::Blank };
    let Some(v) = table.read_cell(record, field) else { return V::Blank };
    let dated = matches!(class_of(&field.kind), Class::Date | Class::DateTime)
        || matches!(field.kind.as_str(), "createdTime" | "lastModifiedTime");
    from_json(&v, dated)
}

fn from_json(v: &Value, dated: bool) -> V {
    match v {
        Value::Null => V::Blank,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => V::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) if dated => parse_datetime(s).map(V::Date).unwrap_or(V::Str(s.clone())),
        Value::String(s) => V::Str(s.clone()),
        Value::Array(a) => V::Arr(a.iter().map(|x| from_json(x, false)).collect()),
        Value::Object(o) => {
            o.get("name").or_else(|| o.get("text")).map(|x| from_json(x, false)).unwrap_or(V::Blank)
        }
    }
}

/// Evaluates a parsed formula for one record.
pub fn eval(expr: &Expr, table: &Table, record: &Record) -> R {
    Ok(match expr {
        Expr::Num(n) => V::Num(*n),
        Expr::Str(s) => V::Str(s.clone()),
        Expr::Bool(b) => V::Bool(*b),
        Expr::Field(id) => cell_value(table, record, id),
        Expr::Neg(e) => V::Num(-eval(e, table, record)?.num().ok_or(EvalError)?),
        Expr::Bin(op, a, b) => {
            let (a, b) = (eval(a, table, record)?, eval(b, table, record)?);
            binary(*op, &a, &b)?
        }
        Expr::Call(name, args) => call(name, args, table, record)?,
    })
}

fn equal(a: &V, b: &V) -> bool {
    match (a, b) {
        (V::Blank, x) | (x, V::Blank) => !x.truthy() || x.text().is_empty(),
        (V::Date(_), _) | (_, V::Date(_)) => {
            matches!((a.date(), b.date()), (Some(x), Some(y)) if x == y)
        }
        (V::Num(_) | V::Bool(_), V::Num(_) | V::Bool(_)) => a.num() == b.num(),
        (V::Num(x), V::Str(s)) | (V::Str(s), V::Num(x)) => {
            s.trim().parse::<f64>().map_or(fmt_num(*x) == *s, |y| y == *x)
        }
        _ => a.text() == b.text(),
    }
}

fn compare(a: &V, b: &V) -> Option<std::cmp::Ordering> {
    if matches!(a, V::Date(_)) || matches!(b, V::Date(_)) {
        return Some(a.date()?.cmp(&b.date()?));
    }
    match (a.num(), b.num()) {
        (Some(x), Some(y)) if !matches!((a, b), (V::Str(_), V::Str(_))) => x.partial_cmp(&y),
        _ => Some(a.text().cmp(&b.text())),
    }
}

fn binary(op: Op, a: &V, b: &V) -> R {
    use std::cmp::Ordering::*;
    Ok(match op {
        Op::Eq => V::Bool(equal(a, b)),
        Op::Ne => V::Bool(!equal(a, b)),
        Op::Lt => V::Bool(compare(a, b).ok_or(EvalError)? == Less),
        Op::Gt => V::Bool(compare(a, b).ok_or(EvalError)? == Greater),
        Op::Le => V::Bool(compare(a, b).ok_or(EvalError)? != Greater),
        Op::Ge => V::Bool(compare(a, b).ok_or(EvalError)? != Less),
        Op::Concat => V::Str(a.text() + &b.text()),
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let (x, y) = (a.num().ok_or(EvalError)?, b.num().ok_or(EvalError)?);
            V::Num(match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                Op::Mul => x * y,
                _ if y == 0.0 => return Err(EvalError),
                _ => x / y,
            })
        }
    })
}

/// Functions the emulator knows; [`parse::KNOWN_FUNCTIONS`] must list the same names.
fn call(name: &str, args: &[Expr], table: &Table, record: &Record) -> R {
    let arg = |i: usize| args.get(i).map(|e| eval(e, table, record)).unwrap_or(Ok(V::Blank));
    Ok(match name {
        "AND" => {
            for a in args {
                if !eval(a, table, record)?.truthy() {
                    return Ok(V::Bool(false));
                }
            }
            V::Bool(true)
        }
        "OR" => {
            for a in args {
                if eval(a, table, record)?.truthy() {
                    return Ok(V::Bool(true));
                }
            }
            V::Bool(false)
        }
        "NOT" => V::Bool(!arg(0)?.truthy()),
        "IF" => {
            if arg(0)?.truthy() {
                arg(1)?
            } else {
                arg(2)?
            }
        }
        "TRUE" => V::Bool(true),
        "FALSE" => V::Bool(false),
        "BLANK" => V::Blank,
        "RECORD_ID" => V::Str(record.id.clone()),
        "CREATED_TIME" => V::Date(record.created.trunc_subsecs(0)),
        // Per-field edit times are not kept; the record's last edit bounds them all.
        "LAST_MODIFIED_TIME" => V::Date(record.modified.trunc_subsecs(0)),
        "IS_AFTER" => V::Bool(arg(0)?.date().ok_or(EvalError)? > arg(1)?.date().ok_or(EvalError)?),
        "IS_BEFORE" => V::Bool(arg(0)?.date().ok_or(EvalError)? < arg(1)?.date().ok_or(EvalError)?),
        "IS_SAME" => {
            let (a, b) = (arg(0)?.date().ok_or(EvalError)?, arg(1)?.date().ok_or(EvalError)?);
            let unit = arg(2)?.text().to_ascii_lowercase();
            V::Bool(match unit.as_str() {
                "" | "millisecond" | "milliseconds" | "ms" => a == b,
                "second" | "seconds" | "s" => a.trunc_subsecs(0) == b.trunc_subsecs(0),
                "day" | "days" | "d" => a.date_naive() == b.date_naive(),
                "month" | "months" | "m" => (a.year(), a.month()) == (b.year(), b.month()),
                "year" | "years" | "y" => a.year() == b.year(),
                _ => return Err(EvalError),
            })
        }
        "DATETIME_PARSE" => V::Date(arg(0)?.date().ok_or(EvalError)?),
        "LOWER" => V::Str(arg(0)?.text().to_lowercase()),
        "UPPER" => V::Str(arg(0)?.text().to_uppercase()),
        "TRIM" => V::Str(arg(0)?.text().trim().to_owned()),
        "LEN" => V::Num(arg(0)?.text().chars().count() as f64),
        "FIND" => {
            let (needle, hay) = (arg(0)?.text(), arg(1)?.text());
            V::Num(hay.find(&needle).map_or(0.0, |i| (hay[..i].chars().count() + 1) as f64))
        }
        "CONCATENATE" => {
            let mut s = String::new();
            for a in args {
                s += &eval(a, table, record)?.text();
            }
            V::Str(s)
        }
        _ => return Err(EvalError),
    })
}

/// Parses and evaluates a formula field's text for one record.
pub fn evaluate_text(text: &str, table: &Table, record: &Record) -> Result<Value, EvalError> {
    let expr = parse(text, table).map_err(|_| EvalError)?;
    Ok(eval(&expr, table, record)?.to_json())
}

#[cfg(test)]
mod tests;
