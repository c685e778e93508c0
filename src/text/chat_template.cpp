#include "text/chat_template.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fmt/ranges.h>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <variant>

#include "core/check.h"
#include "gguf/gguf.h"

namespace tandem::text {

namespace {

// Ordered: dict keys keep their insertion order, as Python dicts do (tojson, items()).
using json = nlohmann::ordered_json;

// ---- values --------------------------------------------------------------------------------

// A Jinja value: JSON data (null is Python's None), Jinja's Undefined, or a namespace() object,
// which is shared so that `set ns.x = ...` inside a loop is seen outside it.
struct Value {
    enum class Kind { Undefined, Data, Namespace } kind = Kind::Undefined;
    json data;
    std::shared_ptr<json> ns;

    static Value undefined() { return {}; }
    static Value of(json j) { return {Kind::Data, std::move(j), nullptr}; }
    bool is_undefined() const { return kind == Kind::Undefined; }
    bool is_none() const { return kind == Kind::Data && data.is_null(); }
    bool is_string() const { return kind == Kind::Data && data.is_string(); }
};

bool truthy(const Value& v) {
    if (v.kind == Value::Kind::Undefined) return false;
    if (v.kind == Value::Kind::Namespace) return true;
    const json& j = v.data;
    if (j.is_null()) return false;
    if (j.is_boolean()) return j.get<bool>();
    if (j.is_number_integer()) return j.get<int64_t>() != 0;
    if (j.is_number()) return j.get<double>() != 0.0;
    if (j.is_string()) return !j.get_ref<const std::string&>().empty();
    if (j.is_array() || j.is_object()) return !j.empty();
    return true;
}

std::string python_float(double d) {
    if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
    if (std::isnan(d)) return "nan";
    std::string s = fmt::format("{}", d);  // shortest round-trip form, like Python's repr
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
    return s;
}

std::string python_repr(const json& j);

std::string python_str(const json& j) {
    if (j.is_string()) return j.get<std::string>();
    return python_repr(j);
}

std::string python_repr(const json& j) {
    switch (j.type()) {
        case json::value_t::null:
            return "None";
        case json::value_t::boolean:
            return j.get<bool>() ? "True" : "False";
        case json::value_t::number_integer:
            return std::to_string(j.get<int64_t>());
        case json::value_t::number_unsigned:
            return std::to_string(j.get<uint64_t>());
        case json::value_t::number_float:
            return python_float(j.get<double>());
        case json::value_t::string: {
            const std::string s = j.get<std::string>();
            const char q =
                s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
            std::string out(1, q);
            for (char c : s) {
                if (c == q || c == '\\') out += '\\';
                if (c == '\n') {
                    out += "\\n";
                    continue;
                }
                out += c;
            }
            return out + q;
        }
        case json::value_t::array: {
            std::string out = "[";
            for (size_t i = 0; i < j.size(); ++i) out += (i ? ", " : "") + python_repr(j[i]);
            return out + "]";
        }
        case json::value_t::object: {
            std::string out = "{";
            bool first = true;
            for (const auto& [k, v] : j.items()) {
                out += (first ? "" : ", ") + python_repr(json(k)) + ": " + python_repr(v);
                first = false;
            }
            return out + "}";
        }
        default:
            return j.dump();
    }
}

std::string to_output(const Value& v) {
    if (v.kind == Value::Kind::Undefined) return "";
    if (v.kind == Value::Kind::Namespace) return "<Namespace>";
    return python_str(v.data);
}

// Python's json.dumps(x, ensure_ascii=False) with its default separators, which is what
// transformers installs as the `tojson` filter.
std::string python_json_dumps(const json& j) {
    switch (j.type()) {
        case json::value_t::array: {
            std::string out = "[";
            for (size_t i = 0; i < j.size(); ++i) out += (i ? ", " : "") + python_json_dumps(j[i]);
            return out + "]";
        }
        case json::value_t::object: {
            std::string out = "{";
            bool first = true;
            for (const auto& [k, v] : j.items()) {
                out += (first ? "" : ", ") + json(k).dump(-1, ' ', false) + ": " +
                       python_json_dumps(v);
                first = false;
            }
            return out + "}";
        }
        case json::value_t::number_float:
            return python_float(j.get<double>());
        default:
            return j.dump(-1, ' ', false);
    }
}

// ---- lexing ---------------------------------------------------------------------------------

struct Piece {
    enum class Kind { Text, Expr, Block } kind;
    std::string text;
    size_t pos;  // byte offset in the template, for errors
};

std::string_view kSpaces = " \t\n\r\f\v";

// Splits the template into text, {{ expr }} and {% block %} pieces, applying '-' whitespace
// control and jinja2's trim_blocks (drop the first newline after a block tag) and
// lstrip_blocks (drop spaces and tabs before a block tag at the start of a line), as
// transformers configures its environment.
std::vector<Piece> lex(const std::string& src) {
    std::vector<Piece> out;
    size_t pos = 0;
    bool strip_next = false;
    while (pos <= src.size()) {
        size_t open = src.find('{', pos);
        while (open != std::string::npos && open + 1 < src.size() && src[open + 1] != '{' &&
               src[open + 1] != '%' && src[open + 1] != '#')
            open = src.find('{', open + 1);
        if (open != std::string::npos && open + 1 >= src.size()) open = std::string::npos;
        std::string text =
            src.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
        if (strip_next) {
            text.erase(0, std::min(text.find_first_not_of(kSpaces), text.size()));
            strip_next = false;
        }
        if (open == std::string::npos) {
            if (!text.empty()) out.push_back({Piece::Kind::Text, text, pos});
            break;
        }
        const char kind = src[open + 1];
        const bool block = kind == '%' || kind == '#';
        const char marker = open + 2 < src.size() ? src[open + 2] : '\0';
        if (marker == '-') {
            text.erase(text.find_last_not_of(kSpaces) + 1);
        } else if (block && marker != '+') {
            // lstrip_blocks: only when the tag starts its line in the source (the newline may
            // already be gone, eaten by trim_blocks after the previous tag).
            size_t k = open;
            while (k > 0 && (src[k - 1] == ' ' || src[k - 1] == '\t')) --k;
            if ((k == 0 || src[k - 1] == '\n') && open - k <= text.size())
                text.erase(text.size() - (open - k));
        }
        if (!text.empty()) out.push_back({Piece::Kind::Text, text, pos});

        const std::string close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
        size_t end = std::string::npos;
        if (kind == '#') {
            end = src.find(close, open + 2);
        } else {
            char quote = 0;
            for (size_t i = open + 2; i + 1 < src.size(); ++i) {
                const char c = src[i];
                if (quote) {
                    if (c == '\\')
                        ++i;
                    else if (c == quote)
                        quote = 0;
                } else if (c == '\'' || c == '"') {
                    quote = c;
                } else if (src.compare(i, 2, close) == 0) {
                    end = i;
                    break;
                }
            }
        }
        if (end == std::string::npos)
            fail("chat template: unclosed '{}{}' at byte {}", '{', kind, open);
        size_t inner_begin = open + 2, inner_end = end;
        if (inner_begin < inner_end && (src[inner_begin] == '-' || src[inner_begin] == '+'))
            ++inner_begin;
        if (inner_end > inner_begin && src[inner_end - 1] == '-') {
            --inner_end;
            strip_next = true;
        }
        pos = end + 2;
        if (block && !strip_next && pos < src.size() && src[pos] == '\n') ++pos;  // trim_blocks
        if (kind == '#') continue;
        out.push_back({kind == '{' ? Piece::Kind::Expr : Piece::Kind::Block,
                       src.substr(inner_begin, inner_end - inner_begin), open});
    }
    return out;
}

struct Token {
    enum class Kind { Name, String, Int, Float, Op, End } kind;
    std::string text;
    json value;
};

std::vector<Token> tokenize_expr(const std::string& s, size_t where) {
    std::vector<Token> out;
    size_t i = 0;
    while (i < s.size()) {
        const char c = s[i];
        if (kSpaces.find(c) != std::string_view::npos) {
            ++i;
        } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
            size_t j = i;
            while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_'))
                ++j;
            out.push_back({Token::Kind::Name, s.substr(i, j - i), {}});
            i = j;
        } else if (std::isdigit(static_cast<unsigned char>(c))) {
            size_t j = i;
            bool is_float = false;
            while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) ||
                                    (s[j] == '.' && j + 1 < s.size() &&
                                     std::isdigit(static_cast<unsigned char>(s[j + 1]))))) {
                is_float |= s[j] == '.';
                ++j;
            }
            const std::string num = s.substr(i, j - i);
            out.push_back(is_float ? Token{Token::Kind::Float, num, std::stod(num)}
                                   : Token{Token::Kind::Int, num, std::stoll(num)});
            i = j;
        } else if (c == '\'' || c == '"') {
            std::string v;
            size_t j = i + 1;
            for (; j < s.size() && s[j] != c; ++j) {
                if (s[j] == '\\' && j + 1 < s.size()) {
                    const char e = s[++j];
                    v += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
                } else {
                    v += s[j];
                }
            }
            if (j >= s.size()) fail("chat template: unterminated string at byte {}", where);
            out.push_back({Token::Kind::String, s.substr(i, j + 1 - i), v});
            i = j + 1;
        } else {
            static const char* kOps[] = {"==", "!=", "<=", ">=", "//", "**", "+", "-", "*",
                                         "/",  "%",  "~",  "<",  ">",  "(",  ")", "[", "]",
                                         "{",  "}",  ".",  ",",  ":",  "=",  "|"};
            bool found = false;
            for (const char* op : kOps) {
                if (s.compare(i, std::strlen(op), op) == 0) {
                    out.push_back({Token::Kind::Op, op, {}});
                    i += std::strlen(op);
                    found = true;
                    break;
                }
            }
            if (!found)
                fail("chat template: unexpected character '{}' in expression at byte {}", c, where);
        }
    }
    out.push_back({Token::Kind::End, "", {}});
    return out;
}

// ---- syntax tree ----------------------------------------------------------------------------

struct Expr {
    enum class Kind {
        Literal,
        Var,
        Attr,
        Index,
        Slice,
        Call,
        Filter,
        Test,
        Not,
        Neg,
        Binary,
        Cond,
        List,
        Dict
    } kind;
    std::string name;  // Var, Attr, Filter, Test, Binary operator
    json literal;
    bool negated = false;                     // Test: `is not`
    std::vector<std::unique_ptr<Expr>> args;  // operands (first is the subject where one)
    std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;  // Call, Filter
};
using ExprPtr = std::unique_ptr<Expr>;

ExprPtr make(Expr::Kind k, std::string name = {}) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->name = std::move(name);
    return e;
}

class ExprParser {
  public:
    ExprParser(std::vector<Token> toks, size_t where) : t_(std::move(toks)), where_(where) {}

    ExprPtr parse_expression() {
        ExprPtr e = parse_or();
        if (peek_name("if")) {
            ++i_;
            auto c = make(Expr::Kind::Cond);
            ExprPtr cond = parse_or();
            ExprPtr other = make(Expr::Kind::Literal);  // missing else: Undefined-like ""
            other->literal = json();
            other->name = "undefined";
            if (peek_name("else")) {
                ++i_;
                other = parse_expression();
            }
            c->args.push_back(std::move(e));
            c->args.push_back(std::move(cond));
            c->args.push_back(std::move(other));
            return c;
        }
        return e;
    }
    bool at_end() const { return t_[i_].kind == Token::Kind::End; }
    bool peek_name(std::string_view n) const {
        return t_[i_].kind == Token::Kind::Name && t_[i_].text == n;
    }
    bool peek_op(std::string_view op) const {
        return t_[i_].kind == Token::Kind::Op && t_[i_].text == op;
    }
    std::string expect_name() {
        if (t_[i_].kind != Token::Kind::Name) error("a name");
        return t_[i_++].text;
    }
    void expect_op(std::string_view op) {
        if (!peek_op(op)) error(fmt::format("'{}'", op));
        ++i_;
    }
    void expect_end() {
        if (!at_end()) error("the end of the tag");
    }
    [[noreturn]] void error(const std::string& what) const {
        fail("chat template: expected {} at byte {}, found '{}'", what, where_, t_[i_].text);
    }
    size_t& index() { return i_; }

  private:
    ExprPtr binary(std::string op, ExprPtr a, ExprPtr b) {
        auto e = make(Expr::Kind::Binary, std::move(op));
        e->args.push_back(std::move(a));
        e->args.push_back(std::move(b));
        return e;
    }
    ExprPtr parse_or() {
        ExprPtr e = parse_and();
        while (peek_name("or")) {
            ++i_;
            e = binary("or", std::move(e), parse_and());
        }
        return e;
    }
    ExprPtr parse_and() {
        ExprPtr e = parse_not();
        while (peek_name("and")) {
            ++i_;
            e = binary("and", std::move(e), parse_not());
        }
        return e;
    }
    ExprPtr parse_not() {
        if (peek_name("not")) {
            ++i_;
            auto e = make(Expr::Kind::Not);
            e->args.push_back(parse_not());
            return e;
        }
        return parse_compare();
    }
    ExprPtr parse_compare() {
        ExprPtr e = parse_concat();
        for (;;) {
            if (t_[i_].kind == Token::Kind::Op &&
                (t_[i_].text == "==" || t_[i_].text == "!=" || t_[i_].text == "<" ||
                 t_[i_].text == ">" || t_[i_].text == "<=" || t_[i_].text == ">=")) {
                std::string op = t_[i_++].text;
                e = binary(op, std::move(e), parse_concat());
            } else if (peek_name("in")) {
                ++i_;
                e = binary("in", std::move(e), parse_concat());
            } else if (peek_name("not") && t_[i_ + 1].kind == Token::Kind::Name &&
                       t_[i_ + 1].text == "in") {
                i_ += 2;
                auto n = make(Expr::Kind::Not);
                n->args.push_back(binary("in", std::move(e), parse_concat()));
                e = std::move(n);
            } else {
                return e;
            }
        }
    }
    ExprPtr parse_concat() {
        ExprPtr e = parse_add();
        while (peek_op("~")) {
            ++i_;
            e = binary("~", std::move(e), parse_add());
        }
        return e;
    }
    ExprPtr parse_add() {
        ExprPtr e = parse_mul();
        while (peek_op("+") || peek_op("-")) {
            std::string op = t_[i_++].text;
            e = binary(op, std::move(e), parse_mul());
        }
        return e;
    }
    ExprPtr parse_mul() {
        ExprPtr e = parse_unary();
        while (peek_op("*") || peek_op("/") || peek_op("//") || peek_op("%")) {
            std::string op = t_[i_++].text;
            e = binary(op, std::move(e), parse_unary());
        }
        return e;
    }
    ExprPtr parse_unary() {
        if (peek_op("-")) {
            ++i_;
            auto e = make(Expr::Kind::Neg);
            e->args.push_back(parse_unary());
            return e;
        }
        return parse_filters(parse_postfix(parse_primary()));
    }
    void parse_call_args(Expr& call) {
        expect_op("(");
        while (!peek_op(")")) {
            if (t_[i_].kind == Token::Kind::Name && t_[i_ + 1].kind == Token::Kind::Op &&
                t_[i_ + 1].text == "=") {
                std::string k = t_[i_].text;
                i_ += 2;
                call.kwargs.emplace_back(k, parse_expression());
            } else {
                call.args.push_back(parse_expression());
            }
            if (!peek_op(",")) break;
            ++i_;
        }
        expect_op(")");
    }
    ExprPtr parse_filters(ExprPtr e) {
        for (;;) {
            if (peek_op("|")) {
                ++i_;
                auto f = make(Expr::Kind::Filter, expect_name());
                f->args.push_back(std::move(e));
                if (peek_op("(")) parse_call_args(*f);
                e = std::move(f);
            } else if (peek_name("is")) {
                ++i_;
                auto t = make(Expr::Kind::Test);
                if (peek_name("not")) {
                    ++i_;
                    t->negated = true;
                }
                t->name = expect_name();
                t->args.push_back(std::move(e));
                e = std::move(t);
            } else {
                return e;
            }
        }
    }
    ExprPtr parse_postfix(ExprPtr e) {
        for (;;) {
            if (peek_op(".")) {
                ++i_;
                auto a = make(Expr::Kind::Attr, expect_name());
                a->args.push_back(std::move(e));
                e = std::move(a);
            } else if (peek_op("[")) {
                ++i_;
                ExprPtr lo, hi;
                if (!peek_op(":")) lo = parse_expression();
                if (peek_op(":")) {
                    ++i_;
                    if (!peek_op("]")) hi = parse_expression();
                    auto s = make(Expr::Kind::Slice);
                    s->args.push_back(std::move(e));
                    s->args.push_back(std::move(lo));
                    s->args.push_back(std::move(hi));
                    e = std::move(s);
                } else {
                    auto x = make(Expr::Kind::Index);
                    x->args.push_back(std::move(e));
                    x->args.push_back(std::move(lo));
                    e = std::move(x);
                }
                expect_op("]");
            } else if (peek_op("(")) {
                auto c = make(Expr::Kind::Call);
                c->args.push_back(std::move(e));
                parse_call_args(*c);
                e = std::move(c);
            } else {
                return e;
            }
        }
    }
    ExprPtr parse_primary() {
        const Token& t = t_[i_];
        if (t.kind == Token::Kind::String || t.kind == Token::Kind::Int ||
            t.kind == Token::Kind::Float) {
            ++i_;
            auto e = make(Expr::Kind::Literal);
            e->literal = t.value;
            // Adjacent string literals concatenate, as in Python and Jinja.
            while (t.kind == Token::Kind::String && t_[i_].kind == Token::Kind::String)
                e->literal = e->literal.get<std::string>() + t_[i_++].value.get<std::string>();
            return e;
        }
        if (t.kind == Token::Kind::Name) {
            ++i_;
            auto e = make(Expr::Kind::Literal);
            if (t.text == "true" || t.text == "True") {
                e->literal = true;
            } else if (t.text == "false" || t.text == "False") {
                e->literal = false;
            } else if (t.text == "none" || t.text == "None") {
                e->literal = nullptr;
            } else {
                return make(Expr::Kind::Var, t.text);
            }
            return e;
        }
        if (peek_op("(")) {
            ++i_;
            ExprPtr e = parse_expression();
            expect_op(")");
            return e;
        }
        if (peek_op("[")) {
            ++i_;
            auto e = make(Expr::Kind::List);
            while (!peek_op("]")) {
                e->args.push_back(parse_expression());
                if (!peek_op(",")) break;
                ++i_;
            }
            expect_op("]");
            return e;
        }
        if (peek_op("{")) {
            ++i_;
            auto e = make(Expr::Kind::Dict);
            while (!peek_op("}")) {
                e->args.push_back(parse_expression());
                expect_op(":");
                e->args.push_back(parse_expression());
                if (!peek_op(",")) break;
                ++i_;
            }
            expect_op("}");
            return e;
        }
        error("an expression");
    }

    std::vector<Token> t_;
    size_t i_ = 0;
    size_t where_;
};

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;

struct Node {
    enum class Kind { Text, Output, If, For, Set } kind;
    std::string text;                                // Text
    ExprPtr expr;                                    // Output, Set value, For iterable
    std::vector<std::pair<ExprPtr, Body>> branches;  // If: (condition, body); else cond = null
    std::vector<std::string> vars;                   // For loop variables
    ExprPtr filter;                                  // For ... if cond
    Body body, else_body;                            // For
    std::string target, attr;                        // Set: name or name.attr
};

class TemplateParser {
  public:
    explicit TemplateParser(std::vector<Piece> pieces) : p_(std::move(pieces)) {}

    Body parse_all() {
        std::string end;
        Body b = parse_body({}, end);
        if (i_ < p_.size()) fail("chat template: unexpected '{}' at byte {}", end, p_[i_].pos);
        return b;
    }

  private:
    static std::string keyword(const Piece& p) {
        const size_t b = p.text.find_first_not_of(kSpaces);
        if (b == std::string::npos) return "";
        const size_t e = p.text.find_first_of(kSpaces, b);
        return p.text.substr(b, e == std::string::npos ? std::string::npos : e - b);
    }

    // Parses nodes until a block whose keyword is in `stops` (left unconsumed, its keyword in
    // `found`) or the end of the template.
    Body parse_body(const std::vector<std::string>& stops, std::string& found) {
        Body body;
        while (i_ < p_.size()) {
            const Piece& p = p_[i_];
            if (p.kind == Piece::Kind::Text) {
                auto n = std::make_unique<Node>();
                n->kind = Node::Kind::Text;
                n->text = p.text;
                body.push_back(std::move(n));
                ++i_;
                continue;
            }
            if (p.kind == Piece::Kind::Expr) {
                ExprParser ep(tokenize_expr(p.text, p.pos), p.pos);
                auto n = std::make_unique<Node>();
                n->kind = Node::Kind::Output;
                n->expr = ep.parse_expression();
                ep.expect_end();
                body.push_back(std::move(n));
                ++i_;
                continue;
            }
            const std::string kw = keyword(p);
            if (std::find(stops.begin(), stops.end(), kw) != stops.end()) {
                found = kw;
                return body;
            }
            ExprParser ep(tokenize_expr(p.text, p.pos), p.pos);
            ep.index() = 1;  // past the keyword
            ++i_;
            if (kw == "if") {
                body.push_back(parse_if(ep));
            } else if (kw == "for") {
                body.push_back(parse_for(ep));
            } else if (kw == "set") {
                auto n = std::make_unique<Node>();
                n->kind = Node::Kind::Set;
                n->target = ep.expect_name();
                if (ep.peek_op(".")) {
                    ++ep.index();
                    n->attr = ep.expect_name();
                }
                ep.expect_op("=");
                n->expr = ep.parse_expression();
                ep.expect_end();
                body.push_back(std::move(n));
            } else {
                fail("chat template: unsupported tag '{}' at byte {}", kw, p.pos);
            }
        }
        found.clear();
        if (!stops.empty())
            fail("chat template: missing {{% {} %}} at the end of the template", stops.back());
        return body;
    }

    std::unique_ptr<Node> parse_if(ExprParser& ep) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::If;
        ExprPtr cond = ep.parse_expression();
        ep.expect_end();
        for (;;) {
            std::string found;
            Body b = parse_body({"elif", "else", "endif"}, found);
            n->branches.emplace_back(std::move(cond), std::move(b));
            const Piece& p = p_[i_++];
            if (found == "endif") return n;
            ExprParser next(tokenize_expr(p.text, p.pos), p.pos);
            next.index() = 1;
            if (found == "elif") {
                cond = next.parse_expression();
                next.expect_end();
            } else {
                next.expect_end();
                Body eb = parse_body({"endif"}, found);
                ++i_;
                n->branches.emplace_back(nullptr, std::move(eb));
                return n;
            }
        }
    }

    std::unique_ptr<Node> parse_for(ExprParser& ep) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::For;
        n->vars.push_back(ep.expect_name());
        while (ep.peek_op(",")) {
            ++ep.index();
            n->vars.push_back(ep.expect_name());
        }
        if (!ep.peek_name("in")) ep.error("'in'");
        ++ep.index();
        n->expr = ep.parse_expression();  // parses `xs if cond` as a conditional: undo below
        if (n->expr->kind == Expr::Kind::Cond && n->expr->args[2]->name == "undefined") {
            n->filter = std::move(n->expr->args[1]);
            n->expr = std::move(n->expr->args[0]);
        }
        ep.expect_end();
        std::string found;
        n->body = parse_body({"else", "endfor"}, found);
        ++i_;
        if (found == "else") {
            n->else_body = parse_body({"endfor"}, found);
            ++i_;
        }
        return n;
    }

    std::vector<Piece> p_;
    size_t i_ = 0;
};

// ---- evaluation -----------------------------------------------------------------------------

class Renderer {
  public:
    explicit Renderer(const json& context) {
        scopes_.push_back({});
        for (const auto& [k, v] : context.items()) scopes_[0][k] = Value::of(v);
    }

    void run(const Body& body, std::string& out) {
        for (const auto& n : body) exec(*n, out);
    }

  private:
    void exec(const Node& n, std::string& out) {
        switch (n.kind) {
            case Node::Kind::Text:
                out += n.text;
                break;
            case Node::Kind::Output:
                out += to_output(eval(*n.expr));
                break;
            case Node::Kind::If:
                for (const auto& [cond, body] : n.branches) {
                    if (!cond || truthy(eval(*cond))) {
                        run(body, out);
                        break;
                    }
                }
                break;
            case Node::Kind::Set: {
                Value v = eval(*n.expr);
                if (n.attr.empty()) {
                    scopes_.back()[n.target] = std::move(v);
                } else {
                    Value ns = lookup(n.target);
                    if (ns.kind != Value::Kind::Namespace)
                        fail("chat template: cannot set attribute '{}' of '{}': not a namespace",
                             n.attr, n.target);
                    (*ns.ns)[n.attr] = v.kind == Value::Kind::Data ? v.data : json();
                }
                break;
            }
            case Node::Kind::For:
                exec_for(n, out);
                break;
        }
    }

    void exec_for(const Node& n, std::string& out) {
        const Value seq = eval(*n.expr);
        std::vector<json> items;
        if (seq.kind == Value::Kind::Data && seq.data.is_array()) {
            items.assign(seq.data.begin(), seq.data.end());
        } else if (seq.kind == Value::Kind::Data && seq.data.is_object()) {
            for (const auto& [k, v] : seq.data.items()) items.push_back(k);  // dict: its keys
        } else if (seq.kind == Value::Kind::Data && seq.data.is_string()) {
            fail("chat template: iterating over a string is not supported");
        } else if (!seq.is_undefined() && !seq.is_none()) {
            fail("chat template: cannot iterate over {}", to_output(seq));
        }
        // Loop filters apply before `loop` is computed, as in Jinja.
        auto bind = [&](std::map<std::string, Value>& scope, const json& item) {
            if (n.vars.size() == 1) {
                scope[n.vars[0]] = Value::of(item);
            } else {
                if (!item.is_array() || item.size() != n.vars.size())
                    fail("chat template: cannot unpack {} into {} loop variables",
                         python_repr(item), n.vars.size());
                for (size_t k = 0; k < n.vars.size(); ++k) scope[n.vars[k]] = Value::of(item[k]);
            }
        };
        if (n.filter) {
            std::vector<json> kept;
            for (const auto& item : items) {
                scopes_.push_back({});
                bind(scopes_.back(), item);
                if (truthy(eval(*n.filter))) kept.push_back(item);
                scopes_.pop_back();
            }
            items = std::move(kept);
        }
        if (items.empty()) {
            run(n.else_body, out);
            return;
        }
        for (size_t i = 0; i < items.size(); ++i) {
            scopes_.push_back({});
            bind(scopes_.back(), items[i]);
            json loop = {{"index", i + 1},
                         {"index0", i},
                         {"revindex", items.size() - i},
                         {"revindex0", items.size() - i - 1},
                         {"first", i == 0},
                         {"last", i + 1 == items.size()},
                         {"length", items.size()}};
            loop["previtem"] = i > 0 ? items[i - 1] : json();
            loop["nextitem"] = i + 1 < items.size() ? items[i + 1] : json();
            scopes_.back()["loop"] = Value::of(loop);
            run(n.body, out);
            scopes_.pop_back();
        }
    }

    Value lookup(const std::string& name) const {
        for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
            const auto f = it->find(name);
            if (f != it->end()) return f->second;
        }
        return Value::undefined();
    }

    static const json& data(const Value& v, const char* what) {
        if (v.kind != Value::Kind::Data)
            fail("chat template: {} needs a value, got {}", what,
                 v.is_undefined() ? "an undefined variable" : "a namespace");
        return v.data;
    }

    static Value get_item(const Value& obj, const json& key) {
        if (obj.kind == Value::Kind::Namespace) {
            if (key.is_string() && obj.ns->contains(key.get<std::string>()))
                return Value::of((*obj.ns)[key.get<std::string>()]);
            return Value::undefined();
        }
        if (obj.kind != Value::Kind::Data) return Value::undefined();
        const json& j = obj.data;
        if (j.is_object() && key.is_string()) {
            const auto it = j.find(key.get<std::string>());
            return it == j.end() ? Value::undefined() : Value::of(*it);
        }
        if ((j.is_array() || j.is_string()) && key.is_number_integer()) {
            const auto size = static_cast<int64_t>(
                j.is_array() ? j.size() : j.get_ref<const std::string&>().size());
            int64_t k = key.get<int64_t>();
            if (k < 0) k += size;
            if (k < 0 || k >= size) return Value::undefined();
            if (j.is_array()) return Value::of(j[static_cast<size_t>(k)]);
            return Value::of(
                std::string(1, j.get_ref<const std::string&>()[static_cast<size_t>(k)]));
        }
        return Value::undefined();
    }

    Value eval(const Expr& e) {
        switch (e.kind) {
            case Expr::Kind::Literal:
                return e.name == "undefined" ? Value::undefined() : Value::of(e.literal);
            case Expr::Kind::Var:
                return lookup(e.name);
            case Expr::Kind::Attr:
                return get_item(eval(*e.args[0]), json(e.name));
            case Expr::Kind::Index:
                return get_item(eval(*e.args[0]), data(eval(*e.args[1]), "an index"));
            case Expr::Kind::Slice:
                return slice(e);
            case Expr::Kind::Not:
                return Value::of(!truthy(eval(*e.args[0])));
            case Expr::Kind::Neg: {
                const Value v_value = eval(*e.args[0]);
                const json& v = data(v_value, "unary minus");
                if (v.is_number_integer()) return Value::of(-v.get<int64_t>());
                if (v.is_number()) return Value::of(-v.get<double>());
                fail("chat template: cannot negate {}", python_repr(v));
            }
            case Expr::Kind::Cond:
                return truthy(eval(*e.args[1])) ? eval(*e.args[0]) : eval(*e.args[2]);
            case Expr::Kind::List: {
                json a = json::array();
                for (const auto& x : e.args) a.push_back(data(eval(*x), "a list item"));
                return Value::of(a);
            }
            case Expr::Kind::Dict: {
                json o = json::object();
                for (size_t i = 0; i + 1 < e.args.size(); i += 2)
                    o[python_str(data(eval(*e.args[i]), "a dict key"))] =
                        data(eval(*e.args[i + 1]), "a dict value");
                return Value::of(o);
            }
            case Expr::Kind::Binary:
                return binary(e);
            case Expr::Kind::Test:
                return Value::of(test(e) != e.negated);
            case Expr::Kind::Filter:
                return filter(e);
            case Expr::Kind::Call:
                return call(e);
        }
        TANDEM_CHECK(false, "unhandled expression kind");
    }

    Value slice(const Expr& e) {
        const Value v_value = eval(*e.args[0]);
        const json& v = data(v_value, "slicing");
        const int64_t size =
            static_cast<int64_t>(v.is_string() ? v.get_ref<const std::string&>().size() : v.size());
        auto bound = [&](const ExprPtr& x, int64_t dflt) {
            if (!x) return dflt;
            int64_t k = data(eval(*x), "a slice bound").get<int64_t>();
            if (k < 0) k += size;
            return std::clamp<int64_t>(k, 0, size);
        };
        const int64_t lo = bound(e.args[1], 0), hi = std::max(lo, bound(e.args[2], size));
        if (v.is_string())
            return Value::of(
                v.get<std::string>().substr(static_cast<size_t>(lo), static_cast<size_t>(hi - lo)));
        if (!v.is_array()) fail("chat template: cannot slice {}", python_repr(v));
        return Value::of(json(v.begin() + lo, v.begin() + hi));
    }

    static bool equal(const Value& a, const Value& b) {
        if (a.kind != b.kind) return false;
        if (a.kind == Value::Kind::Undefined) return true;
        if (a.kind == Value::Kind::Namespace) return a.ns == b.ns;
        return a.data == b.data;
    }

    Value binary(const Expr& e) {
        const std::string& op = e.name;
        if (op == "and") {
            Value a = eval(*e.args[0]);
            return truthy(a) ? eval(*e.args[1]) : a;
        }
        if (op == "or") {
            Value a = eval(*e.args[0]);
            return truthy(a) ? a : eval(*e.args[1]);
        }
        const Value a = eval(*e.args[0]), b = eval(*e.args[1]);
        if (op == "==") return Value::of(equal(a, b));
        if (op == "!=") return Value::of(!equal(a, b));
        if (op == "~") return Value::of(to_output(a) + to_output(b));
        if (op == "in") {
            const json& hay = data(b, "'in'");
            const json& needle = data(a, "'in'");
            if (hay.is_string())
                return Value::of(needle.is_string() &&
                                 hay.get<std::string>().find(needle.get<std::string>()) !=
                                     std::string::npos);
            if (hay.is_array())
                return Value::of(std::find(hay.begin(), hay.end(), needle) != hay.end());
            if (hay.is_object())
                return Value::of(needle.is_string() && hay.contains(needle.get<std::string>()));
            fail("chat template: 'in' needs a string, list or dict on the right, got {}",
                 python_repr(hay));
        }
        const json& x = data(a, op.c_str());
        const json& y = data(b, op.c_str());
        if (op == "+") {
            if (x.is_string() && y.is_string())
                return Value::of(x.get<std::string>() + y.get<std::string>());
            if (x.is_array() && y.is_array()) {
                json r = x;
                r.insert(r.end(), y.begin(), y.end());
                return Value::of(r);
            }
        }
        if (op == "<" || op == ">" || op == "<=" || op == ">=") {
            int c = 0;
            if (x.is_string() && y.is_string())
                c = x.get<std::string>().compare(y.get<std::string>());
            else if (x.is_number() && y.is_number())
                c = x.get<double>() < y.get<double>()   ? -1
                    : x.get<double>() > y.get<double>() ? 1
                                                        : 0;
            else
                fail("chat template: cannot compare {} and {}", python_repr(x), python_repr(y));
            return Value::of(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
        }
        if (x.is_number() && y.is_number()) {
            const bool ints = x.is_number_integer() && y.is_number_integer();
            if (ints && op != "/") {
                const int64_t p = x.get<int64_t>(), q = y.get<int64_t>();
                if ((op == "//" || op == "%") && q == 0) fail("chat template: division by zero");
                if (op == "+") return Value::of(p + q);
                if (op == "-") return Value::of(p - q);
                if (op == "*") return Value::of(p * q);
                // Python floors: -7 // 2 == -4, -7 % 2 == 1.
                const int64_t fq = p / q - ((p % q != 0) && ((p < 0) != (q < 0)));
                if (op == "//") return Value::of(fq);
                if (op == "%") return Value::of(p - fq * q);
            }
            const double p = x.get<double>(), q = y.get<double>();
            if (op == "+") return Value::of(p + q);
            if (op == "-") return Value::of(p - q);
            if (op == "*") return Value::of(p * q);
            if (op == "/") return Value::of(p / q);
        }
        if (op == "*" && x.is_string() && y.is_number_integer()) {
            std::string r;
            for (int64_t k = 0; k < y.get<int64_t>(); ++k) r += x.get<std::string>();
            return Value::of(r);
        }
        fail("chat template: unsupported operands for '{}': {} and {}", op, python_repr(x),
             python_repr(y));
    }

    bool test(const Expr& e) {
        const Value v = eval(*e.args[0]);
        const std::string& t = e.name;
        if (t == "defined") return !v.is_undefined();
        if (t == "undefined") return v.is_undefined();
        if (t == "none") return v.is_none();
        if (v.kind != Value::Kind::Data) {
            if (t == "string" || t == "number" || t == "true" || t == "false" || t == "sequence" ||
                t == "mapping" || t == "iterable" || t == "boolean" || t == "integer")
                return false;
        } else {
            const json& j = v.data;
            if (t == "string") return j.is_string();
            if (t == "number") return j.is_number();
            if (t == "integer") return j.is_number_integer();
            if (t == "boolean") return j.is_boolean();
            if (t == "true") return j.is_boolean() && j.get<bool>();
            if (t == "false") return j.is_boolean() && !j.get<bool>();
            if (t == "mapping") return j.is_object();
            if (t == "sequence" || t == "iterable")
                return j.is_array() || j.is_string() || j.is_object();
        }
        fail("chat template: unsupported test 'is {}'", t);
    }

    static std::string strip(const std::string& s, std::string_view chars, bool left, bool right) {
        size_t b = 0, e = s.size();
        if (left) b = std::min(s.find_first_not_of(chars), s.size());
        if (right)
            e = s.find_last_not_of(chars) == std::string::npos ? b : s.find_last_not_of(chars) + 1;
        return e > b ? s.substr(b, e - b) : "";
    }

    static std::string replace_all(std::string s, const std::string& from, const std::string& to) {
        if (from.empty()) return s;
        std::string out;
        for (size_t pos = 0;;) {
            const size_t hit = s.find(from, pos);
            out.append(s, pos, hit == std::string::npos ? std::string::npos : hit - pos);
            if (hit == std::string::npos) return out;
            out += to;
            pos = hit + from.size();
        }
    }

    Value filter(const Expr& e) {
        const Value v = eval(*e.args[0]);
        const std::string& f = e.name;
        std::vector<Value> args;
        for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
        if (f == "default" || f == "d") {
            const bool boolean = !args.empty() && args.size() > 1 && truthy(args[1]);
            if (v.is_undefined() || (boolean && !truthy(v)))
                return args.empty() ? Value::of("") : args[0];
            return v;
        }
        if (f == "string") return Value::of(to_output(v));
        const json& j = data(v, ("filter " + f).c_str());
        if (f == "trim") return Value::of(strip(python_str(j), kSpaces, true, true));
        if (f == "length" || f == "count")
            return Value::of(j.is_string() ? j.get_ref<const std::string&>().size() : j.size());
        if (f == "lower" || f == "upper") {
            std::string s = python_str(j);
            for (char& c : s)
                c = static_cast<char>(f == "lower" ? std::tolower(static_cast<unsigned char>(c))
                                                   : std::toupper(static_cast<unsigned char>(c)));
            return Value::of(s);
        }
        if (f == "tojson") {
            if (!e.kwargs.empty() || !args.empty())
                fail("chat template: tojson arguments are not supported");
            return Value::of(python_json_dumps(j));
        }
        if (f == "first" || f == "last") {
            if (!j.is_array() || j.empty()) return Value::undefined();
            return Value::of(f == "first" ? j.front() : j.back());
        }
        if (f == "join") {
            const std::string sep = args.empty() ? "" : python_str(data(args[0], "join"));
            std::string out;
            for (size_t i = 0; i < j.size(); ++i) out += (i ? sep : "") + python_str(j[i]);
            return Value::of(out);
        }
        if (f == "items") {
            json r = json::array();
            for (const auto& [k, x] : j.items()) r.push_back({k, x});
            return Value::of(r);
        }
        if (f == "list") return Value::of(j.is_array() ? j : json::array());
        if (f == "replace" && args.size() == 2)
            return Value::of(replace_all(python_str(j), python_str(data(args[0], "replace")),
                                         python_str(data(args[1], "replace"))));
        if (f == "safe") return v;
        fail("chat template: unsupported filter '{}'", f);
    }

    Value call(const Expr& e) {
        const Expr& fn = *e.args[0];
        std::vector<Value> args;
        for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
        if (fn.kind == Expr::Kind::Var && fn.name == "namespace") {
            auto ns = std::make_shared<json>(json::object());
            for (const auto& [k, x] : e.kwargs) (*ns)[k] = data(eval(*x), "namespace()");
            return {Value::Kind::Namespace, {}, ns};
        }
        if (fn.kind == Expr::Kind::Var && fn.name == "raise_exception")
            fail("chat template raised: {}", args.empty() ? "" : to_output(args[0]));
        if (fn.kind == Expr::Kind::Var && fn.name == "range") {
            json r = json::array();
            int64_t lo = 0, hi = 0;
            if (args.size() == 1)
                hi = data(args[0], "range").get<int64_t>();
            else if (args.size() == 2)
                lo = data(args[0], "range").get<int64_t>(),
                hi = data(args[1], "range").get<int64_t>();
            for (int64_t k = lo; k < hi; ++k) r.push_back(k);
            return Value::of(r);
        }
        if (fn.kind != Expr::Kind::Attr) fail("chat template: unsupported function call");
        const Value obj = eval(*fn.args[0]);
        const std::string& m = fn.name;
        const json& j = data(obj, ("method " + m).c_str());
        auto arg_str = [&](size_t k) { return python_str(data(args.at(k), m.c_str())); };
        if (j.is_string()) {
            const std::string& s = j.get_ref<const std::string&>();
            if (m == "strip" || m == "lstrip" || m == "rstrip") {
                const std::string chars =
                    args.empty() || args[0].is_none() ? std::string(kSpaces) : arg_str(0);
                return Value::of(strip(s, chars, m != "rstrip", m != "lstrip"));
            }
            if (m == "startswith") return Value::of(s.starts_with(arg_str(0)));
            if (m == "endswith") return Value::of(s.ends_with(arg_str(0)));
            if (m == "upper" || m == "lower") {
                std::string r = s;
                for (char& c : r)
                    c = static_cast<char>(m == "lower"
                                              ? std::tolower(static_cast<unsigned char>(c))
                                              : std::toupper(static_cast<unsigned char>(c)));
                return Value::of(r);
            }
            if (m == "replace") return Value::of(replace_all(s, arg_str(0), arg_str(1)));
            if (m == "split") {
                json r = json::array();
                if (args.empty()) {
                    for (size_t p = 0;
                         (p = s.find_first_not_of(kSpaces, p)) != std::string::npos;) {
                        const size_t q = std::min(s.find_first_of(kSpaces, p), s.size());
                        r.push_back(s.substr(p, q - p));
                        p = q;
                    }
                } else {
                    const std::string sep = arg_str(0);
                    if (sep.empty()) fail("chat template: split with an empty separator");
                    size_t p = 0;
                    for (size_t hit; (hit = s.find(sep, p)) != std::string::npos;
                         p = hit + sep.size())
                        r.push_back(s.substr(p, hit - p));
                    r.push_back(s.substr(p));
                }
                return Value::of(r);
            }
        }
        if (j.is_object()) {
            if (m == "items") {
                json r = json::array();
                for (const auto& [k, x] : j.items()) r.push_back({k, x});
                return Value::of(r);
            }
            if (m == "keys" || m == "values") {
                json r = json::array();
                for (const auto& [k, x] : j.items()) r.push_back(m == "keys" ? json(k) : x);
                return Value::of(r);
            }
            if (m == "get") {
                const Value got = get_item(obj, data(args.at(0), "get"));
                return got.is_undefined() ? (args.size() > 1 ? args[1] : Value::of(nullptr)) : got;
            }
        }
        fail("chat template: unsupported method '{}' on {}", m, python_repr(j).substr(0, 40));
    }

    std::vector<std::map<std::string, Value>> scopes_;
};

}  // namespace

struct ChatTemplate::Impl {
    Body body;
};

ChatTemplate::ChatTemplate(const std::string& source) : impl_(std::make_unique<Impl>()) {
    // jinja2 drops a single trailing newline (keep_trailing_newline is off by default).
    std::string src = source;
    if (src.ends_with('\n')) src.pop_back();
    impl_->body = TemplateParser(lex(src)).parse_all();
}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
    if (!context.is_object()) fail("chat template: the context must be a JSON object");
    std::string out;
    Renderer(context).run(impl_->body, out);
    return out;
}

std::string chat_template_source(const gguf::Metadata& md, const std::string& override_spec) {
    if (override_spec.empty()) {
        if (!md.has("tokenizer.chat_template"))
            fail("the model has no chat template (tokenizer.chat_template); give one with --chat-template "
                 "NAME|FILE (built-in: {})",
                 fmt::join(builtin_chat_template_names(), ", "));
        return md.get_string("tokenizer.chat_template");
    }
    if (const auto builtin = builtin_chat_template(override_spec)) return std::string(*builtin);
    std::ifstream in(override_spec, std::ios::binary);
    if (!in)
        fail("--chat-template {}: neither a built-in template ({}) nor a readable file", override_spec,
             fmt::join(builtin_chat_template_names(), ", "));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string apply_chat_template(const gguf::Metadata& md, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const std::string& override_spec) {
    const ChatTemplate tmpl(chat_template_source(md, override_spec));
    const std::vector<std::string> tokens = md.get_strings("tokenizer.ggml.tokens");
    auto token = [&](const char* key) -> std::string {
        const int64_t id = md.int_or(key, -1);
        if (id < 0 || id >= static_cast<int64_t>(tokens.size())) return "";
        return tokens[static_cast<size_t>(id)];
    };
    const nlohmann::ordered_json context = {{"messages", messages},
                                            {"add_generation_prompt", add_generation_prompt},
                                            {"bos_token", token("tokenizer.ggml.bos_token_id")},
                                            {"eos_token", token("tokenizer.ggml.eos_token_id")}};
    return tmpl.render(context);
}

}  // namespace tandem::text
