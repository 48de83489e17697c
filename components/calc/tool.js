// calc: evaluates arithmetic expressions with a recursive-descent parser (no eval).
//
// Grammar (usual precedence; ^ and ** are right-associative powers):
//   expr   := term (("+" | "-") term)*
//   term   := unary (("*" | "/" | "%") unary | "%" "of" unary | "%")*
//             (a "%" with no operand after it is a percentage: 15% = 0.15, 15% of 240 = 36;
//              between two operands it is the remainder: 7 % 3 = 1)
//   unary  := ("+" | "-") unary | power
//   power  := atom (("^" | "**") unary)?
//   atom   := number | name | name "(" args ")" | "(" expr ")"

const FUNCTIONS = {
  sqrt: [1, Math.sqrt], abs: [1, Math.abs], sin: [1, Math.sin], cos: [1, Math.cos], tan: [1, Math.tan],
  asin: [1, Math.asin], acos: [1, Math.acos], atan: [1, Math.atan], exp: [1, Math.exp],
  ln: [1, Math.log], log10: [1, Math.log10], log2: [1, Math.log2],
  floor: [1, Math.floor], ceil: [1, Math.ceil], round: [1, Math.round],
  min: [-1, Math.min], max: [-1, Math.max], pow: [2, Math.pow],
};
const CONSTANTS = { pi: Math.PI, e: Math.E, tau: 2 * Math.PI };

class CalcError extends Error {}

function tokenize(text) {
  const tokens = [];
  const pattern = /\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(\*\*|[-+*/%^(),]))/y;
  let position = 0;
  while (position < text.length) {
    if (/^\s*$/.test(text.slice(position))) break;
    pattern.lastIndex = position;
    const match = pattern.exec(text);
    if (!match) {
      const at = position + (text.slice(position).length - text.slice(position).trimStart().length);
      throw new CalcError(`unexpected character '${text[at]}' at position ${at + 1}`);
    }
    const start = pattern.lastIndex - match[0].trimStart().length;
    if (match[1] !== undefined) tokens.push({ kind: "number", value: Number(match[1]), at: start });
    else if (match[2] !== undefined) tokens.push({ kind: "name", value: match[2], at: start });
    else tokens.push({ kind: match[3], at: start });
    position = pattern.lastIndex;
  }
  tokens.push({ kind: "end", at: text.length });
  return tokens;
}

class Parser {
  constructor(text) {
    this.tokens = tokenize(text);
    this.index = 0;
  }
  peek() { return this.tokens[this.index]; }
  next() { return this.tokens[this.index++]; }
  expect(kind) {
    const token = this.next();
    if (token.kind !== kind) throw this.unexpected(token, `expected '${kind}'`);
    return token;
  }
  unexpected(token, hint) {
    const what = token.kind === "end" ? "end of expression" : `'${token.value ?? token.kind}'`;
    return new CalcError(`unexpected ${what} at position ${token.at + 1}${hint ? `: ${hint}` : ""}`);
  }
  parse() {
    const value = this.expr();
    const rest = this.peek();
    if (rest.kind !== "end") throw this.unexpected(rest, "expected an operator");
    return value;
  }
  expr() {
    let value = this.term();
    while (["+", "-"].includes(this.peek().kind)) {
      value = this.next().kind === "+" ? value + this.term() : value - this.term();
    }
    return value;
  }
  term() {
    let value = this.unary();
    while (["*", "/", "%"].includes(this.peek().kind)) {
      const op = this.next();
      if (op.kind === "%" && this.percentFollows()) {
        value /= 100;
        if (this.peek().kind === "name" && this.peek().value.toLowerCase() === "of") {
          this.next();
          value *= this.unary();
        }
        continue;
      }
      const right = this.unary();
      if (op.kind !== "*" && right === 0) throw new CalcError(`division by zero at position ${op.at + 1}`);
      value = op.kind === "*" ? value * right : op.kind === "/" ? value / right : value % right;
    }
    return value;
  }
  // After "%": "of", or nothing that could start an operand (the end, ")", ",", an operator).
  percentFollows() {
    const next = this.peek();
    if (next.kind === "name") return next.value.toLowerCase() === "of";
    return ["end", ")", ",", "*", "/", "%", "^", "**"].includes(next.kind);
  }
  unary() {
    const kind = this.peek().kind;
    if (kind === "-" || kind === "+") {
      this.next();
      const value = this.unary();
      return kind === "-" ? -value : value;
    }
    return this.power();
  }
  power() {
    const base = this.atom();
    if (["^", "**"].includes(this.peek().kind)) {
      this.next();
      return Math.pow(base, this.unary());
    }
    return base;
  }
  atom() {
    const token = this.next();
    if (token.kind === "number") return token.value;
    if (token.kind === "(") {
      const value = this.expr();
      this.expect(")");
      return value;
    }
    if (token.kind === "name") return this.named(token);
    throw this.unexpected(token, "expected a number, a name or '('");
  }
  named(token) {
    const name = token.value.toLowerCase();
    if (this.peek().kind !== "(") {
      if (name in CONSTANTS) return CONSTANTS[name];
      throw new CalcError(`unknown name '${token.value}' at position ${token.at + 1} (constants: ${Object.keys(CONSTANTS).join(", ")})`);
    }
    if (!(name in FUNCTIONS)) {
      throw new CalcError(`unknown function '${token.value}' at position ${token.at + 1} (functions: ${Object.keys(FUNCTIONS).join(", ")})`);
    }
    this.next();
    const args = [this.expr()];
    while (this.peek().kind === ",") {
      this.next();
      args.push(this.expr());
    }
    this.expect(")");
    const [arity, fn] = FUNCTIONS[name];
    if (arity >= 0 && args.length !== arity) {
      throw new CalcError(`${name} takes ${arity} argument${arity === 1 ? "" : "s"}, got ${args.length}`);
    }
    return fn(...args);
  }
}

export function evaluate(text) {
  if (!text.trim()) throw new CalcError("the expression is empty");
  const value = new Parser(text).parse();
  if (Number.isNaN(value)) throw new CalcError("the result is not a number (e.g. sqrt of a negative)");
  if (!Number.isFinite(value)) throw new CalcError("the result is too large");
  return Number.isInteger(value) && Math.abs(value) < 2 ** 53 ? String(value) : String(Number(value.toPrecision(15)));
}

function example(request, expression, result, answer) {
  return { request, arguments: [{ name: "expression", value: { tag: "string", val: expression } }], result, answer };
}

export const tool = {
  describe() {
    return {
      name: "calc",
      description:
        "Evaluates an arithmetic expression: + - * / % (remainder) and ^ (power), percentages (15% of 240), parentheses, " +
        "functions like sqrt, sin, ln, min, max, and the constants pi and e.",
      version: "1.0.0",
      params: [
        {
          name: "expression",
          description: "The expression, e.g. (2 + 3) * 4 ^ 2",
          type: "string",
          required: true,
          minimum: undefined,
          maximum: undefined,
          choices: [],
          defaultValue: undefined,
        },
      ],
      examples: [
        example("How much is 46 times 19?", "46 * 19", "874", "46 times 19 is 874."),
        example("What is the square root of 81?", "sqrt(81)", "9", "The square root of 81 is 9."),
        example("Compute (7 - 2) * 3 + 1.", "(7 - 2) * 3 + 1", "16", "(7 - 2) * 3 + 1 is 16."),
        example("What is 8% of 350?", "350 * 8 / 100", "28", "8% of 350 is 28."),
        example("(120 + 80) / 4", "(120 + 80) / 4", "50", "(120 + 80) / 4 = 50"),
      ],
    };
  },
  invoke(args) {
    const expression = args.find((arg) => arg.name === "expression");
    if (!expression || expression.value.tag !== "string") throw "missing the 'expression' argument";
    try {
      return evaluate(expression.value.val);
    } catch (error) {
      if (error instanceof CalcError) throw error.message; // a thrown string becomes err(...)
      throw `internal error: ${error}`;
    }
  },
};
