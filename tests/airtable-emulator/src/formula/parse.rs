//! Tokenizer and precedence-climbing parser. Field references are resolved against the
//! table while parsing, so an unknown field is an invalid formula, as in Airtable.

use super::Invalid;
use crate::model::table::Table;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Concat,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Str(String),
    Bool(bool),
    /// A field id.
    Field(String),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    /// Upper-cased function name and arguments.
    Call(String, Vec<Expr>),
}

pub const KNOWN_FUNCTIONS: &[&str] = &[
    "AND",
    "OR",
    "NOT",
    "IF",
    "TRUE",
    "FALSE",
    "BLANK",
    "RECORD_ID",
    "CREATED_TIME",
    "LAST_MODIFIED_TIME",
    "IS_AFTER",
    "IS_BEFORE",
    "IS_SAME",
    "DATETIME_PARSE",
    "LOWER",
    "UPPER",
    "TRIM",
    "LEN",
    "FIND",
    "CONCATENATE",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Field(String),
    Ident(String),
    Op(Op),
    LParen,
    RParen,
    Comma,
}

fn tokenize(src: &str) -> Result<Vec<Tok>, Invalid> {
    let bad = |m: &str| Invalid(m.to_owned());
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '&' => {
                out.push(Tok::Op(Op::Concat));
                i += 1
            }
            '+' => {
                out.push(Tok::Op(Op::Add));
                i += 1
            }
            '-' => {
                out.push(Tok::Op(Op::Sub));
                i += 1
            }
            '*' => {
                out.push(Tok::Op(Op::Mul));
                i += 1
            }
            '/' => {
                out.push(Tok::Op(Op::Div));
                i += 1
            }
            '=' => {
                out.push(Tok::Op(Op::Eq));
                i += 1
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op(Op::Ne));
                i += 2
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    out.push(Tok::Op(Op::Le));
                    i += 2
                }
                Some('>') => {
                    out.push(Tok::Op(Op::Ne));
                    i += 2
                }
                _ => {
                    out.push(Tok::Op(Op::Lt));
                    i += 1
                }
            },
            '>' => match chars.get(i + 1) {
                Some('=') => {
                    out.push(Tok::Op(Op::Ge));
                    i += 2
                }
                _ => {
                    out.push(Tok::Op(Op::Gt));
                    i += 1
                }
            },
            '\'' | '"' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(bad("unterminated string")),
                        Some('\\') => {
                            match chars.get(i + 1) {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some(&e) => s.push(e),
                                None => return Err(bad("dangling escape")),
                            }
                            i += 2;
                        }
                        Some(&q) if q == quote => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '{' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&ch| ch == '}')
                    .ok_or_else(|| bad("unterminated field reference"))?;
                out.push(Tok::Field(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Tok::Num(text.parse().map_err(|_| bad("bad number"))?));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            _ => return Err(bad("unexpected character")),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    table: &'a Table,
}

fn precedence(op: Op) -> u8 {
    match op {
        Op::Eq | Op::Ne | Op::Lt | Op::Gt | Op::Le | Op::Ge => 1,
        Op::Concat => 2,
        Op::Add | Op::Sub => 3,
        Op::Mul | Op::Div => 4,
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expr(&mut self, min: u8) -> Result<Expr, Invalid> {
        let mut lhs = self.unary()?;
        while let Some(Tok::Op(op)) = self.peek().cloned() {
            let p = precedence(op);
            if p < min {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(p + 1)?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, Invalid> {
        if self.peek() == Some(&Tok::Op(Op::Sub)) {
            self.pos += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, Invalid> {
        match self.next() {
            Some(Tok::Num(n)) => Ok(Expr::Num(n)),
            Some(Tok::Str(s)) => Ok(Expr::Str(s)),
            Some(Tok::Field(name)) => self
                .table
                .field(&name)
                .map(|f| Expr::Field(f.id.clone()))
                .ok_or_else(|| Invalid(format!("unknown field {name}"))),
            Some(Tok::LParen) => {
                let e = self.expr(0)?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err(Invalid("missing )".into())),
                }
            }
            Some(Tok::Ident(name)) => {
                let upper = name.to_ascii_uppercase();
                if self.peek() != Some(&Tok::LParen) {
                    return match upper.as_str() {
                        "TRUE" => Ok(Expr::Bool(true)),
                        "FALSE" => Ok(Expr::Bool(false)),
                        _ => Err(Invalid(format!("unknown name {name}"))),
                    };
                }
                if !KNOWN_FUNCTIONS.contains(&upper.as_str()) {
                    return Err(Invalid(format!("unknown function {name}")));
                }
                self.pos += 1;
                let mut args = Vec::new();
                if self.peek() == Some(&Tok::RParen) {
                    self.pos += 1;
                } else {
                    loop {
                        args.push(self.expr(0)?);
                        match self.next() {
                            Some(Tok::Comma) => continue,
                            Some(Tok::RParen) => break,
                            _ => return Err(Invalid("expected , or )".into())),
                        }
                    }
                }
                check_arity(&upper, args.len())?;
                Ok(Expr::Call(upper, args))
            }
            _ => Err(Invalid("unexpected token".into())),
        }
    }
}

fn check_arity(name: &str, n: usize) -> Result<(), Invalid> {
    let ok = match name {
        "TRUE" | "FALSE" | "BLANK" | "RECORD_ID" | "CREATED_TIME" => n == 0,
        "NOT" | "LOWER" | "UPPER" | "TRIM" | "LEN" => n == 1,
        "IS_AFTER" | "IS_BEFORE" | "FIND" => n == 2,
        "IS_SAME" => n == 2 || n == 3,
        "IF" => n == 2 || n == 3,
        "DATETIME_PARSE" => (1..=3).contains(&n),
        "AND" | "OR" | "CONCATENATE" => n >= 1,
        _ => true, // LAST_MODIFIED_TIME takes 0..n field references
    };
    if ok {
        Ok(())
    } else {
        Err(Invalid(format!("wrong number of arguments to {name}")))
    }
}

/// Parses `src` against `table`'s fields.
pub fn parse(src: &str, table: &Table) -> Result<Expr, Invalid> {
    let toks = tokenize(src)?;
    if toks.is_empty() {
        return Err(Invalid("empty formula".into()));
    }
    let mut p = Parser { toks, pos: 0, table };
    let e = p.expr(0)?;
    if p.pos != p.toks.len() {
        return Err(Invalid("trailing input".into()));
    }
    Ok(e)
}
