//! The SQL/JSON path language of `jsonb_path_exists`, `jsonb_path_match` and
//! `jsonb_path_query`, as Postgres 15 evaluates it: `lax` (the default) and `strict`
//! modes, member and element accessors (`.key`, `."key"`, `.*`, `[*]`, `[n]`, `[n to m]`,
//! `last`), filters `? (...)`, variables (`$name`, from the `vars` object), comparisons
//! (existential over sequences, three-valued), `&&`, `||`, `!`, `exists (...)`,
//! `like_regex ... flag "i"`, `starts with`, `is unknown`, arithmetic, and the methods
//! `size()`, `type()`, `double()`, `abs()`, `floor()`, `ceiling()` and `keyvalue()`.

use std::cmp::Ordering;

use super::{Json, canonical_number, cmp_numbers};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Root,
    Current,
    Last,
    Var(String),
    Literal(Json),
    Key(Box<Node>, String),
    AnyKey(Box<Node>),
    AnyElement(Box<Node>),
    Elements(Box<Node>, Vec<(Node, Option<Node>)>),
    Filter(Box<Node>, Box<Node>),
    Method(Box<Node>, String),
    Neg(Box<Node>),
    Plus(Box<Node>),
    Arith(char, Box<Node>, Box<Node>),
    Compare(CmpOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Exists(Box<Node>),
    IsUnknown(Box<Node>),
    LikeRegex(Box<Node>, String, String),
    StartsWith(Box<Node>, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed path and its mode.
#[derive(Debug, Clone)]
pub struct JsonPath {
    strict: bool,
    root: Node,
}

fn syntax(message: impl Into<String>) -> Error {
    Error::Syntax(message.into())
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Dollar,
    At,
    Var(String),
    Ident(String),
    Str(String),
    Num(String),
    Punct(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Tok>> {
    let s: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < s.len() {
        let c = s[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '$' {
            i += 1;
            if i < s.len() && s[i] == '"' {
                let (v, n) = string_at(&s, i)?;
                out.push(Tok::Var(v));
                i = n;
            } else {
                let start = i;
                while i < s.len() && ident(s[i]) {
                    i += 1;
                }
                if i == start {
                    out.push(Tok::Dollar);
                } else {
                    out.push(Tok::Var(s[start..i].iter().collect()));
                }
            }
            continue;
        }
        if c == '@' {
            out.push(Tok::At);
            i += 1;
            continue;
        }
        if c == '"' {
            let (v, n) = string_at(&s, i)?;
            out.push(Tok::Str(v));
            i = n;
            continue;
        }
        if c.is_ascii_digit()
            || (c == '.'
                && s.get(i + 1).is_some_and(|d| d.is_ascii_digit())
                && !matches!(
                    out.last(),
                    Some(Tok::Dollar | Tok::At | Tok::Ident(_) | Tok::Var(_) | Tok::Str(_))
                        | Some(Tok::Punct(")" | "]"))
                ))
        {
            let start = i;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            if i < s.len() && s[i] == '.' && s.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                i += 1;
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < s.len() && (s[i] == 'e' || s[i] == 'E') {
                let save = i;
                i += 1;
                if i < s.len() && (s[i] == '+' || s[i] == '-') {
                    i += 1;
                }
                if i < s.len() && s[i].is_ascii_digit() {
                    while i < s.len() && s[i].is_ascii_digit() {
                        i += 1;
                    }
                } else {
                    i = save;
                }
            }
            let lit: String = s[start..i].iter().collect();
            let lit = if lit.starts_with('.') {
                format!("0{lit}")
            } else {
                lit
            };
            out.push(Tok::Num(lit));
            continue;
        }
        if ident(c) {
            let start = i;
            while i < s.len() && ident(s[i]) {
                i += 1;
            }
            out.push(Tok::Ident(s[start..i].iter().collect()));
            continue;
        }
        let two: String = s[i..(i + 2).min(s.len())].iter().collect();
        let p: &'static str = match two.as_str() {
            "==" => "==",
            "!=" => "!=",
            "<>" => "!=",
            "<=" => "<=",
            ">=" => ">=",
            "&&" => "&&",
            "||" => "||",
            _ => match c {
                '.' => ".",
                '[' => "[",
                ']' => "]",
                '(' => "(",
                ')' => ")",
                '?' => "?",
                '*' => "*",
                ',' => ",",
                '<' => "<",
                '>' => ">",
                '!' => "!",
                '+' => "+",
                '-' => "-",
                '/' => "/",
                '%' => "%",
                '=' => "==",
                _ => {
                    return Err(syntax(format!(
                        "syntax error at or near \"{c}\" of jsonpath input"
                    )));
                }
            },
        };
        i += if p.len() == 2 || two == "<>" { 2 } else { 1 };
        out.push(Tok::Punct(p));
    }
    Ok(out)
}

fn string_at(s: &[char], start: usize) -> Result<(String, usize)> {
    let mut i = start + 1;
    let mut out = String::new();
    while i < s.len() {
        match s[i] {
            '"' => return Ok((out, i + 1)),
            '\\' => {
                i += 1;
                let e = *s
                    .get(i)
                    .ok_or_else(|| syntax("unterminated quoted string in jsonpath"))?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    'u' => {
                        let hex: String = s.get(i + 1..i + 5).unwrap_or(&[]).iter().collect();
                        let cp = u32::from_str_radix(&hex, 16)
                            .map_err(|_| syntax("invalid Unicode escape in jsonpath"))?;
                        out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        i += 4;
                    }
                    other => out.push(other),
                }
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(syntax("unterminated quoted string in jsonpath"))
}

struct P {
    toks: Vec<Tok>,
    pos: usize,
    in_subscript: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }
    fn word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(q)) if q.eq_ignore_ascii_case(w))
    }
    fn eat(&mut self, p: &str) -> Result<()> {
        if self.punct(p) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error())
        }
    }
    fn error(&self) -> Error {
        match self.peek() {
            None => syntax("syntax error at end of jsonpath input"),
            Some(t) => syntax(format!(
                "syntax error at or near \"{}\" of jsonpath input",
                match t {
                    Tok::Dollar => "$".into(),
                    Tok::At => "@".into(),
                    Tok::Var(v) => format!("${v}"),
                    Tok::Ident(s) | Tok::Num(s) => s.clone(),
                    Tok::Str(s) => format!("\"{s}\""),
                    Tok::Punct(p) => p.to_string(),
                }
            )),
        }
    }

    fn or(&mut self) -> Result<Node> {
        let mut l = self.and()?;
        while self.punct("||") {
            self.pos += 1;
            l = Node::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Node> {
        let mut l = self.not()?;
        while self.punct("&&") {
            self.pos += 1;
            l = Node::And(Box::new(l), Box::new(self.not()?));
        }
        Ok(l)
    }
    fn not(&mut self) -> Result<Node> {
        if self.punct("!") {
            self.pos += 1;
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.predicate()
    }
    fn predicate(&mut self) -> Result<Node> {
        let l = self.additive()?;
        let op = match self.peek() {
            Some(Tok::Punct("==")) => Some(CmpOp::Eq),
            Some(Tok::Punct("!=")) => Some(CmpOp::Ne),
            Some(Tok::Punct("<")) => Some(CmpOp::Lt),
            Some(Tok::Punct("<=")) => Some(CmpOp::Le),
            Some(Tok::Punct(">")) => Some(CmpOp::Gt),
            Some(Tok::Punct(">=")) => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 1;
            let r = self.additive()?;
            return Ok(Node::Compare(op, Box::new(l), Box::new(r)));
        }
        if self.word("like_regex") {
            self.pos += 1;
            let Some(Tok::Str(pattern)) = self.peek().cloned() else {
                return Err(self.error());
            };
            self.pos += 1;
            let mut flags = String::new();
            if self.word("flag") {
                self.pos += 1;
                let Some(Tok::Str(f)) = self.peek().cloned() else {
                    return Err(self.error());
                };
                self.pos += 1;
                flags = f;
            }
            return Ok(Node::LikeRegex(Box::new(l), pattern, flags));
        }
        if self.word("starts") {
            self.pos += 1;
            if !self.word("with") {
                return Err(self.error());
            }
            self.pos += 1;
            let r = self.additive()?;
            return Ok(Node::StartsWith(Box::new(l), Box::new(r)));
        }
        if self.word("is") {
            self.pos += 1;
            if !self.word("unknown") {
                return Err(self.error());
            }
            self.pos += 1;
            return Ok(Node::IsUnknown(Box::new(l)));
        }
        Ok(l)
    }
    fn additive(&mut self) -> Result<Node> {
        self.arithmetic(&['+', '-'], Self::multiplicative)
    }
    fn multiplicative(&mut self) -> Result<Node> {
        self.arithmetic(&['*', '/', '%'], Self::unary)
    }
    /// A left-associative chain of the operators `ops` over `operand`s.
    fn arithmetic(&mut self, ops: &[char], operand: fn(&mut Self) -> Result<Node>) -> Result<Node> {
        let mut l = operand(self)?;
        loop {
            let Some(op) = ops.iter().copied().find(|c| self.punct(&c.to_string())) else {
                return Ok(l);
            };
            self.pos += 1;
            l = Node::Arith(op, Box::new(l), Box::new(operand(self)?));
        }
    }
    fn unary(&mut self) -> Result<Node> {
        if self.punct("-") {
            self.pos += 1;
            return Ok(Node::Neg(Box::new(self.unary()?)));
        }
        if self.punct("+") {
            self.pos += 1;
            return Ok(Node::Plus(Box::new(self.unary()?)));
        }
        self.accessors()
    }
    fn primary(&mut self) -> Result<Node> {
        let t = self.peek().cloned().ok_or_else(|| self.error())?;
        self.pos += 1;
        Ok(match t {
            Tok::Dollar => Node::Root,
            Tok::At => Node::Current,
            Tok::Var(v) => Node::Var(v),
            Tok::Num(n) => Node::Literal(Json::Number(canonical_number(&n)?)),
            Tok::Str(s) => Node::Literal(Json::String(s)),
            Tok::Ident(w) if w == "true" => Node::Literal(Json::Bool(true)),
            Tok::Ident(w) if w == "false" => Node::Literal(Json::Bool(false)),
            Tok::Ident(w) if w == "null" => Node::Literal(Json::Null),
            Tok::Ident(w) if w == "last" && self.in_subscript > 0 => Node::Last,
            Tok::Ident(w) if w == "exists" && self.punct("(") => {
                self.pos += 1;
                let e = self.or()?;
                self.eat(")")?;
                Node::Exists(Box::new(e))
            }
            Tok::Punct("(") => {
                let e = self.or()?;
                self.eat(")")?;
                e
            }
            _ => {
                self.pos -= 1;
                return Err(self.error());
            }
        })
    }
    fn accessors(&mut self) -> Result<Node> {
        let mut n = self.primary()?;
        loop {
            if self.punct(".") {
                self.pos += 1;
                match self.peek().cloned() {
                    Some(Tok::Punct("*")) => {
                        self.pos += 1;
                        n = Node::AnyKey(Box::new(n));
                    }
                    Some(Tok::Ident(k)) => {
                        self.pos += 1;
                        if self.punct("(") {
                            self.pos += 1;
                            self.eat(")")?;
                            n = Node::Method(Box::new(n), k.to_ascii_lowercase());
                        } else {
                            n = Node::Key(Box::new(n), k);
                        }
                    }
                    Some(Tok::Str(k)) => {
                        self.pos += 1;
                        n = Node::Key(Box::new(n), k);
                    }
                    _ => return Err(self.error()),
                }
            } else if self.punct("[") {
                self.pos += 1;
                if self.punct("*") {
                    self.pos += 1;
                    self.eat("]")?;
                    n = Node::AnyElement(Box::new(n));
                    continue;
                }
                self.in_subscript += 1;
                let mut subs = Vec::new();
                loop {
                    let from = self.additive()?;
                    let to = if self.word("to") {
                        self.pos += 1;
                        Some(self.additive()?)
                    } else {
                        None
                    };
                    subs.push((from, to));
                    if self.punct(",") {
                        self.pos += 1;
                        continue;
                    }
                    break;
                }
                self.in_subscript -= 1;
                self.eat("]")?;
                n = Node::Elements(Box::new(n), subs);
            } else if self.punct("?") {
                self.pos += 1;
                self.eat("(")?;
                let p = self.or()?;
                self.eat(")")?;
                n = Node::Filter(Box::new(n), Box::new(p));
            } else {
                return Ok(n);
            }
        }
    }
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath> {
        let mut toks = tokenize(text)?;
        let mut strict = false;
        if let Some(Tok::Ident(m)) = toks.first() {
            if m.eq_ignore_ascii_case("strict") {
                strict = true;
                toks.remove(0);
            } else if m.eq_ignore_ascii_case("lax") {
                toks.remove(0);
            }
        }
        let mut p = P {
            toks,
            pos: 0,
            in_subscript: 0,
        };
        let root = p.or()?;
        if p.pos < p.toks.len() {
            return Err(p.error());
        }
        Ok(JsonPath { strict, root })
    }

    /// A variable the path names must be in `vars`, wherever it is used (inside a
    /// predicate too, where other errors only make the predicate unknown).
    fn check_vars(&self, vars: Option<&Json>) -> Result<()> {
        fn walk(n: &Node, vars: Option<&Json>) -> Result<()> {
            use Node::*;
            match n {
                Var(name) if vars.and_then(|v| v.field(name)).is_none() => Err(
                    Error::UndefinedObject(format!("could not find jsonpath variable \"{name}\"")),
                ),
                Root | Current | Last | Var(_) | Literal(_) => Ok(()),
                Key(a, _)
                | AnyKey(a)
                | AnyElement(a)
                | Method(a, _)
                | Neg(a)
                | Plus(a)
                | Not(a)
                | Exists(a)
                | IsUnknown(a)
                | LikeRegex(a, ..) => walk(a, vars),
                Filter(a, b)
                | Arith(_, a, b)
                | Compare(_, a, b)
                | And(a, b)
                | Or(a, b)
                | StartsWith(a, b) => walk(a, vars).and_then(|_| walk(b, vars)),
                Elements(a, subs) => {
                    walk(a, vars)?;
                    for (from, to) in subs {
                        walk(from, vars)?;
                        if let Some(t) = to {
                            walk(t, vars)?;
                        }
                    }
                    Ok(())
                }
            }
        }
        walk(&self.root, vars)
    }

    /// The items the path yields (`jsonb_path_query`). `silent` turns errors into an
    /// empty result, as the functions' `silent` argument does.
    pub fn query(&self, target: &Json, vars: Option<&Json>, silent: bool) -> Result<Vec<Json>> {
        if let Some(v) = vars
            && !matches!(v, Json::Object(_))
        {
            return Err(Error::InvalidParameter(
                "\"vars\" argument is not an object".into(),
            ));
        }
        self.check_vars(vars)?;
        let cx = Cx {
            root: target,
            vars,
            strict: self.strict,
        };
        match cx.eval(&self.root, target, None) {
            Ok(v) => Ok(v),
            Err(Fail::Soft(_)) if silent => Ok(Vec::new()),
            Err(Fail::Soft(e) | Fail::Hard(e)) => Err(e),
        }
    }

    /// `jsonb_path_exists`: whether the path yields any item (None: an error, silenced).
    pub fn exists(&self, target: &Json, vars: Option<&Json>, silent: bool) -> Result<Option<bool>> {
        self.check_vars(vars)?;
        let cx = Cx {
            root: target,
            vars,
            strict: self.strict,
        };
        match cx.eval(&self.root, target, None) {
            Ok(v) => Ok(Some(!v.is_empty())),
            Err(Fail::Soft(_)) if silent => Ok(None),
            Err(Fail::Soft(e) | Fail::Hard(e)) => Err(e),
        }
    }

    /// `jsonb_path_match`: the predicate's value; NULL for unknown.
    pub fn matches(
        &self,
        target: &Json,
        vars: Option<&Json>,
        silent: bool,
    ) -> Result<Option<bool>> {
        let items = self.query(target, vars, silent)?;
        match items.as_slice() {
            [Json::Bool(b)] => Ok(Some(*b)),
            [Json::Null] => Ok(None),
            _ if silent => Ok(None),
            _ => Err(Error::Detailed {
                code: "22038",
                message: "single boolean result is expected".into(),
                detail: String::new(),
            }),
        }
    }
}

/// A path predicate in the shape a search filter can hold: comparisons of the value at
/// a chain of keys (`$.a.b`, `$.tags[*]`) with a constant, `exists` of such a chain,
/// and `&&`/`||` of those. What it leaves out only makes it looser (see
/// [`JsonPath::pushable`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Pushable {
    And(Vec<Pushable>),
    Or(Vec<Pushable>),
    /// `op` is one of `=`, `<`, `<=`, `>`, `>=`.
    Compare {
        keys: Vec<String>,
        op: &'static str,
        value: Json,
    },
    Exists {
        keys: Vec<String>,
    },
}

impl JsonPath {
    /// For `jsonb_path_match`: a predicate true on at least every document the path
    /// matches, or None. Lax mode only (it looks into arrays, as a payload filter does).
    pub fn pushable(&self, vars: Option<&Json>) -> Option<Pushable> {
        if self.strict {
            return None;
        }
        pushable_node(&self.root, vars)
    }
}

/// The keys of `$.a.b` (array wildcards `[*]` skipped: lax mode unwraps arrays anyway).
fn key_chain(n: &Node) -> Option<Vec<String>> {
    match n {
        Node::Root => Some(Vec::new()),
        Node::Key(base, k) => {
            let mut keys = key_chain(base)?;
            keys.push(k.clone());
            Some(keys)
        }
        Node::AnyElement(base) => key_chain(base),
        _ => None,
    }
}

fn constant(n: &Node, vars: Option<&Json>) -> Option<Json> {
    match n {
        Node::Literal(v) => Some(v.clone()),
        Node::Var(name) => vars.and_then(|v| v.field(name)).cloned(),
        Node::Neg(inner) => match constant(inner, vars)? {
            Json::Number(n) => Some(Json::Number(negate(&n))),
            _ => None,
        },
        _ => None,
    }
}

fn pushable_node(n: &Node, vars: Option<&Json>) -> Option<Pushable> {
    match n {
        // An AND holds only where each side does: a side left out loosens it.
        Node::And(a, b) => {
            let parts: Vec<Pushable> = [a, b]
                .into_iter()
                .filter_map(|x| pushable_node(x, vars))
                .collect();
            (!parts.is_empty()).then_some(Pushable::And(parts))
        }
        Node::Or(a, b) => Some(Pushable::Or(vec![
            pushable_node(a, vars)?,
            pushable_node(b, vars)?,
        ])),
        Node::Exists(inner) => Some(Pushable::Exists {
            keys: key_chain(inner).filter(|k| !k.is_empty())?,
        }),
        Node::Compare(op, l, r) => {
            let (keys, value, op) = match (key_chain(l), key_chain(r)) {
                (Some(k), None) => (k, constant(r, vars)?, *op),
                (None, Some(k)) => (
                    k,
                    constant(l, vars)?,
                    match op {
                        CmpOp::Lt => CmpOp::Gt,
                        CmpOp::Le => CmpOp::Ge,
                        CmpOp::Gt => CmpOp::Lt,
                        CmpOp::Ge => CmpOp::Le,
                        other => *other,
                    },
                ),
                _ => return None,
            };
            if keys.is_empty() {
                return None;
            }
            let op = match op {
                CmpOp::Eq => "=",
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
                CmpOp::Ne => return None,
            };
            match (&value, op) {
                (Json::String(_) | Json::Bool(_), "=") | (Json::Number(_), _) => {
                    Some(Pushable::Compare { keys, op, value })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

enum Fail {
    /// An error lax mode and `silent` suppress (structural, type).
    Soft(Error),
    /// Always raised (a missing variable).
    Hard(Error),
}

fn soft(code: &'static str, message: impl Into<String>) -> Fail {
    Fail::Soft(Error::Detailed {
        code,
        message: message.into(),
        detail: String::new(),
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Tri {
    True,
    False,
    Unknown,
}

struct Cx<'a> {
    root: &'a Json,
    vars: Option<&'a Json>,
    strict: bool,
}

type Seq = std::result::Result<Vec<Json>, Fail>;

impl Cx<'_> {
    fn eval(&self, node: &Node, current: &Json, last: Option<i64>) -> Seq {
        match node {
            Node::Root => Ok(vec![self.root.clone()]),
            Node::Current => Ok(vec![current.clone()]),
            Node::Last => match last {
                Some(l) => Ok(vec![Json::Number(l.to_string())]),
                None => Err(soft("42601", "LAST is allowed only in array subscripts")),
            },
            Node::Var(name) => match self.vars.and_then(|v| v.field(name)) {
                Some(v) => Ok(vec![v.clone()]),
                None => Err(Fail::Hard(Error::UndefinedObject(format!(
                    "could not find jsonpath variable \"{name}\""
                )))),
            },
            Node::Literal(v) => Ok(vec![v.clone()]),
            Node::Key(base, key) => {
                let mut out = Vec::new();
                for item in self.unwrapped(self.eval(base, current, last)?) {
                    match item.field(key) {
                        Some(v) => out.push(v.clone()),
                        None if self.strict => {
                            return Err(soft(
                                "2203A",
                                match item {
                                    Json::Object(_) => {
                                        format!("JSON object does not contain key \"{key}\"")
                                    }
                                    _ => {
                                        "jsonpath member accessor can only be applied to an object"
                                            .into()
                                    }
                                },
                            ));
                        }
                        None => {}
                    }
                }
                Ok(out)
            }
            Node::AnyKey(base) => {
                let mut out = Vec::new();
                for item in self.unwrapped(self.eval(base, current, last)?) {
                    match item {
                        Json::Object(pairs) => out.extend(pairs.into_iter().map(|(_, v)| v)),
                        _ if self.strict => {
                            return Err(soft(
                                "2203C",
                                "jsonpath wildcard member accessor can only be applied to an object",
                            ));
                        }
                        _ => {}
                    }
                }
                Ok(out)
            }
            Node::AnyElement(base) => {
                let mut out = Vec::new();
                for item in self.eval(base, current, last)? {
                    match item {
                        Json::Array(items) => out.extend(items),
                        _ if self.strict => {
                            return Err(soft(
                                "22039",
                                "jsonpath wildcard array accessor can only be applied to an array",
                            ));
                        }
                        other => out.push(other),
                    }
                }
                Ok(out)
            }
            Node::Elements(base, subs) => {
                let mut out = Vec::new();
                for item in self.eval(base, current, last)? {
                    let items = match item {
                        Json::Array(items) => items,
                        _ if self.strict => {
                            return Err(soft(
                                "22039",
                                "jsonpath array accessor can only be applied to an array",
                            ));
                        }
                        other => vec![other],
                    };
                    let last = items.len() as i64 - 1;
                    for (from, to) in subs {
                        let a = self.index(from, current, last)?;
                        let b = match to {
                            Some(t) => self.index(t, current, last)?,
                            None => a,
                        };
                        if self.strict && (a < 0 || b > last || a > b) {
                            return Err(soft("22033", "jsonpath array subscript is out of bounds"));
                        }
                        for i in a.max(0)..=b.min(last) {
                            out.push(items[i as usize].clone());
                        }
                    }
                }
                Ok(out)
            }
            Node::Filter(base, pred) => {
                let mut out = Vec::new();
                for item in self.unwrapped(self.eval(base, current, last)?) {
                    if self.predicate(pred, &item, last) == Tri::True {
                        out.push(item);
                    }
                }
                Ok(out)
            }
            Node::Method(base, name) => self.method(name, self.eval(base, current, last)?),
            Node::Neg(e) | Node::Plus(e) => {
                let neg = matches!(node, Node::Neg(_));
                self.unwrapped(self.eval(e, current, last)?)
                    .into_iter()
                    .map(|v| match v {
                        Json::Number(n) if neg => Ok(Json::Number(negate(&n))),
                        n @ Json::Number(_) => Ok(n),
                        _ => Err(soft(
                            "22038",
                            format!(
                                "operand of unary jsonpath operator {} is not a numeric value",
                                if neg { '-' } else { '+' }
                            ),
                        )),
                    })
                    .collect()
            }
            Node::Arith(op, l, r) => {
                let single = |seq: Vec<Json>, side: &str| match self.unwrapped(seq).as_slice() {
                    [Json::Number(n)] => Ok(n.clone()),
                    _ => Err(soft(
                        "22038",
                        format!(
                            "{side} operand of jsonpath operator {op} is not a single numeric value"
                        ),
                    )),
                };
                let a = single(self.eval(l, current, last)?, "left")?;
                let b = single(self.eval(r, current, last)?, "right")?;
                Ok(vec![Json::Number(arith(*op, &a, &b)?)])
            }
            Node::Compare(..)
            | Node::And(..)
            | Node::Or(..)
            | Node::Not(_)
            | Node::Exists(_)
            | Node::IsUnknown(_)
            | Node::LikeRegex(..)
            | Node::StartsWith(..) => Ok(vec![match self.predicate(node, current, last) {
                Tri::True => Json::Bool(true),
                Tri::False => Json::Bool(false),
                Tri::Unknown => Json::Null,
            }]),
        }
    }

    fn index(&self, e: &Node, current: &Json, last: i64) -> std::result::Result<i64, Fail> {
        match self.eval(e, current, Some(last))?.as_slice() {
            [Json::Number(n)] => Ok(n.parse::<f64>().unwrap_or(0.0).trunc() as i64),
            _ => Err(soft(
                "22033",
                "jsonpath array subscript is not a single numeric value",
            )),
        }
    }

    /// Lax mode looks into arrays where it wants items.
    fn unwrapped(&self, seq: Vec<Json>) -> Vec<Json> {
        if self.strict {
            return seq;
        }
        let mut out = Vec::with_capacity(seq.len());
        for v in seq {
            match v {
                Json::Array(items) => out.extend(items),
                other => out.push(other),
            }
        }
        out
    }

    fn method(&self, name: &str, seq: Vec<Json>) -> Seq {
        let numeric = |v: Json, f: &dyn Fn(f64) -> f64| match v {
            Json::Number(n) => Ok(Json::Number(number_text(f(n.parse().unwrap_or(0.0)), &n))),
            _ => Err(soft(
                "22038",
                format!("jsonpath item method .{name}() can only be applied to a numeric value"),
            )),
        };
        let mut out = Vec::new();
        match name {
            "size" => {
                for v in seq {
                    out.push(Json::Number(match v {
                        Json::Array(items) => items.len().to_string(),
                        _ if self.strict => {
                            return Err(soft(
                                "22039",
                                "jsonpath item method .size() can only be applied to an array",
                            ));
                        }
                        _ => "1".into(),
                    }));
                }
            }
            "type" => out.extend(seq.into_iter().map(|v| Json::String(v.type_name().into()))),
            "double" => {
                for v in self.unwrapped(seq) {
                    out.push(match v {
                        Json::Number(n) => Json::Number(n),
                        Json::String(s) => match s.trim().parse::<f64>() {
                            Ok(f) if f.is_finite() => {
                                Json::Number(canonical_number(&format_f64(f)).map_err(Fail::Hard)?)
                            }
                            _ => {
                                return Err(soft(
                                    "22038",
                                    "string argument of jsonpath item method .double() is not a valid representation of a double precision number",
                                ));
                            }
                        },
                        _ => {
                            return Err(soft(
                                "22038",
                                "jsonpath item method .double() can only be applied to a string or numeric value",
                            ));
                        }
                    });
                }
            }
            "abs" => {
                for v in self.unwrapped(seq) {
                    out.push(match v {
                        Json::Number(n) => Json::Number(n.trim_start_matches('-').to_string()),
                        other => numeric(other, &f64::abs)?,
                    });
                }
            }
            "floor" => {
                for v in self.unwrapped(seq) {
                    out.push(numeric(v, &f64::floor)?);
                }
            }
            "ceiling" => {
                for v in self.unwrapped(seq) {
                    out.push(numeric(v, &f64::ceil)?);
                }
            }
            "keyvalue" => {
                for v in self.unwrapped(seq) {
                    match v {
                        Json::Object(pairs) => {
                            for (k, v) in pairs {
                                out.push(Json::Object(vec![
                                    ("id".into(), Json::Number("0".into())),
                                    ("key".into(), Json::String(k)),
                                    ("value".into(), v),
                                ]));
                            }
                        }
                        _ => {
                            return Err(soft(
                                "2203C",
                                "jsonpath item method .keyvalue() can only be applied to an object",
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(Fail::Hard(Error::Syntax(format!(
                    "syntax error at or near \"{other}\" of jsonpath input"
                ))));
            }
        }
        Ok(out)
    }

    fn predicate(&self, node: &Node, current: &Json, last: Option<i64>) -> Tri {
        match node {
            Node::And(a, b) => match self.predicate(a, current, last) {
                Tri::False => Tri::False,
                x => match (x, self.predicate(b, current, last)) {
                    (_, Tri::False) => Tri::False,
                    (Tri::True, Tri::True) => Tri::True,
                    _ => Tri::Unknown,
                },
            },
            Node::Or(a, b) => match self.predicate(a, current, last) {
                Tri::True => Tri::True,
                x => match (x, self.predicate(b, current, last)) {
                    (_, Tri::True) => Tri::True,
                    (Tri::False, Tri::False) => Tri::False,
                    _ => Tri::Unknown,
                },
            },
            Node::Not(a) => match self.predicate(a, current, last) {
                Tri::True => Tri::False,
                Tri::False => Tri::True,
                Tri::Unknown => Tri::Unknown,
            },
            Node::IsUnknown(a) => {
                if self.predicate(a, current, last) == Tri::Unknown {
                    Tri::True
                } else {
                    Tri::False
                }
            }
            Node::Exists(e) => match self.eval(e, current, last) {
                Ok(items) if items.is_empty() => Tri::False,
                Ok(_) => Tri::True,
                Err(_) => Tri::Unknown,
            },
            Node::Compare(op, l, r) => {
                let (Ok(ls), Ok(rs)) = (self.eval(l, current, last), self.eval(r, current, last))
                else {
                    return Tri::Unknown;
                };
                let (ls, rs) = (self.unwrapped(ls), self.unwrapped(rs));
                self.existential(&ls, |a| self.existential(&rs, |b| compare_items(*op, a, b)))
            }
            Node::LikeRegex(e, pattern, flags) => {
                let Ok(items) = self.eval(e, current, last) else {
                    return Tri::Unknown;
                };
                let mut builder = regex::RegexBuilder::new(pattern);
                builder.case_insensitive(flags.contains('i'));
                builder.dot_matches_new_line(flags.contains('s'));
                builder.multi_line(flags.contains('m'));
                builder.ignore_whitespace(flags.contains('x'));
                let re = if flags.contains('q') {
                    regex::RegexBuilder::new(&regex::escape(pattern))
                        .case_insensitive(flags.contains('i'))
                        .build()
                } else {
                    builder.build()
                };
                let Ok(re) = re else {
                    return Tri::Unknown;
                };
                self.existential(&self.unwrapped(items), |v| match v {
                    Json::String(s) => {
                        if re.is_match(s) {
                            Tri::True
                        } else {
                            Tri::False
                        }
                    }
                    _ => Tri::Unknown,
                })
            }
            Node::StartsWith(e, prefix) => {
                let (Ok(items), Ok(prefix)) = (
                    self.eval(e, current, last),
                    self.eval(prefix, current, last),
                ) else {
                    return Tri::Unknown;
                };
                let [Json::String(prefix)] = prefix.as_slice() else {
                    return Tri::Unknown;
                };
                self.existential(&self.unwrapped(items), |v| match v {
                    Json::String(s) if s.starts_with(prefix.as_str()) => Tri::True,
                    Json::String(_) => Tri::False,
                    _ => Tri::Unknown,
                })
            }
            // Any other expression used as a predicate (a filter `? (@.flag)`): its
            // single boolean item.
            other => match self.eval(other, current, last) {
                Ok(items) => match items.as_slice() {
                    [Json::Bool(true)] => Tri::True,
                    [Json::Bool(false)] => Tri::False,
                    _ => Tri::Unknown,
                },
                Err(_) => Tri::Unknown,
            },
        }
    }

    /// True if some item gives true; else unknown if some gave unknown (strict mode:
    /// unknown at once); else false.
    fn existential(&self, items: &[Json], f: impl Fn(&Json) -> Tri) -> Tri {
        let mut unknown = false;
        for v in items {
            match f(v) {
                Tri::True if !self.strict => return Tri::True,
                Tri::True => {
                    if unknown {
                        return Tri::Unknown;
                    }
                    return Tri::True;
                }
                Tri::Unknown if self.strict => return Tri::Unknown,
                Tri::Unknown => unknown = true,
                Tri::False => {}
            }
        }
        if unknown { Tri::Unknown } else { Tri::False }
    }
}

fn compare_items(op: CmpOp, a: &Json, b: &Json) -> Tri {
    let truth = |b: bool| if b { Tri::True } else { Tri::False };
    let ord = match (a, b) {
        (Json::Null, Json::Null) => Ordering::Equal,
        (Json::Null, _) | (_, Json::Null) => return truth(op == CmpOp::Ne),
        (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
        (Json::Number(x), Json::Number(y)) => cmp_numbers(x, y),
        (Json::String(x), Json::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => return Tri::Unknown,
    };
    truth(match op {
        CmpOp::Eq => ord.is_eq(),
        CmpOp::Ne => ord.is_ne(),
        CmpOp::Lt => ord.is_lt(),
        CmpOp::Le => ord.is_le(),
        CmpOp::Gt => ord.is_gt(),
        CmpOp::Ge => ord.is_ge(),
    })
}

fn negate(n: &str) -> String {
    match n.strip_prefix('-') {
        Some(p) => p.to_string(),
        None if n.bytes().all(|c| c == b'0' || c == b'.') => n.to_string(),
        None => format!("-{n}"),
    }
}

fn format_f64(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// A float result as a number, keeping an integral input integral.
fn number_text(f: f64, _input: &str) -> String {
    canonical_number(&format_f64(f)).unwrap_or_else(|_| format_f64(f))
}

/// Arithmetic on two numbers: exact for integers, else by floats.
fn arith(op: char, a: &str, b: &str) -> std::result::Result<String, Fail> {
    if let (Ok(x), Ok(y)) = (a.parse::<i128>(), b.parse::<i128>()) {
        let r = match op {
            '+' => x.checked_add(y),
            '-' => x.checked_sub(y),
            '*' => x.checked_mul(y),
            '%' if y != 0 => Some(x % y),
            '/' if y != 0 && x % y == 0 => Some(x / y),
            '/' | '%' if y == 0 => return Err(soft("22012", "division by zero")),
            _ => None,
        };
        if let Some(r) = r {
            return Ok(r.to_string());
        }
    }
    let (x, y): (f64, f64) = (a.parse().unwrap_or(0.0), b.parse().unwrap_or(0.0));
    let r = match op {
        '+' => x + y,
        '-' => x - y,
        '*' => x * y,
        '/' if y == 0.0 => return Err(soft("22012", "division by zero")),
        '/' => x / y,
        '%' if y == 0.0 => return Err(soft("22012", "division by zero")),
        _ => x % y,
    };
    Ok(number_text(r, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(doc: &str, path: &str, vars: Option<&str>) -> Option<bool> {
        let doc = Json::parse_jsonb(doc).expect("valid in the test");
        let vars = vars.map(|v| Json::parse_jsonb(v).expect("valid in the test"));
        JsonPath::parse(path)
            .expect("valid in the test")
            .matches(&doc, vars.as_ref(), false)
            .expect("valid in the test")
    }

    #[test]
    fn predicates_as_langchain_writes_them() {
        let doc = r#"{"page": 4, "topic": "animals", "tags": ["a", "b"], "n": null}"#;
        assert_eq!(
            m(doc, "$.page > $value", Some(r#"{"value": 3}"#)),
            Some(true)
        );
        assert_eq!(
            m(doc, "$.page == $value", Some(r#"{"value": 3}"#)),
            Some(false)
        );
        assert_eq!(
            m(doc, "$.topic == \"animals\" && $.page < 5", None),
            Some(true)
        );
        assert_eq!(m(doc, "$.missing == 1", None), Some(false));
        assert_eq!(m(doc, "$.topic > 1", None), None);
        assert_eq!(m(doc, "$.tags == \"b\"", None), Some(true));
        assert_eq!(m(doc, "$.n == null", None), Some(true));
        assert_eq!(m(doc, "$.n != 1", None), Some(true));
        assert_eq!(m(doc, "!($.page > 10)", None), Some(true));
        assert_eq!(m(doc, "exists($.tags[*] ? (@ == \"a\"))", None), Some(true));
        assert_eq!(
            m(doc, "$.topic like_regex \"^ANI\" flag \"i\"", None),
            Some(true)
        );
        assert_eq!(m(doc, "$.topic starts with \"ani\"", None), Some(true));
        assert_eq!(m(doc, "$.page + 1 == 5", None), Some(true));
        assert_eq!(m(doc, "$.tags.size() == 2", None), Some(true));
    }

    #[test]
    fn queries_follow_lax_and_strict() {
        let doc = Json::parse_jsonb(r#"{"a": [1, 2, 3, {"b": 4}]}"#).expect("valid in the test");
        let q = |p: &str| {
            JsonPath::parse(p)
                .expect("valid in the test")
                .query(&doc, None, false)
                .map(|v| v.iter().map(Json::to_jsonb_text).collect::<Vec<_>>())
        };
        assert_eq!(
            q("$.a[*] ? (@ > 1)").expect("valid in the test"),
            vec!["2", "3"]
        );
        assert_eq!(
            q("$.a[last]").expect("valid in the test"),
            vec![r#"{"b": 4}"#]
        );
        assert_eq!(q("$.a[0 to 1]").expect("valid in the test"), vec!["1", "2"]);
        assert_eq!(q("$.a.b").expect("valid in the test"), vec!["4"]);
        assert!(q("strict $.a.b").is_err());
        assert!(JsonPath::parse("$.a ==").is_err());
    }
}
