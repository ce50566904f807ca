// Holds the page scripts to the message schema: schema.json, generated from the typed
// messages in rt_recon/display/messages.py (python -m rt_recon.display.messages).
//
// checked(kind, message) returns the message wrapped so that every property a script reads
// from it is looked up in the schema, however deep: a key the schema does not declare, or a
// value of another type than the schema says, is reported once in window.rtSchema.errors and
// on the browser console, and the read goes on as it would have, so the page keeps working.
// The browser tests fail on any report: a script cannot read what the server does not send.

const report = { loaded: false, errors: [] };
window.rtSchema = report;

const seen = new Set();
const wrapped = new WeakMap();
// Read by the language or by tools, never a message key.
const LANGUAGE_KEYS = new Set(["toJSON", "then", "constructor"]);
let schema = null;

function fail(text) {
  if (seen.has(text)) return;
  seen.add(text);
  report.errors.push(text);
  console.error(`message schema: ${text}`);
}

/** Load the schema; until it is loaded (or if it cannot be) messages pass unchecked. */
export async function loadSchema(url = "/static/schema.json") {
  try {
    const response = await fetch(url, { cache: "no-cache" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    schema = await response.json();
    report.loaded = true;
  } catch (error) {
    fail(`cannot load ${url} (${error.message}): messages are not checked`);
  }
}

function resolve(node) {
  while (node?.$ref) node = schema.$defs[node.$ref.slice("#/$defs/".length)];
  return node ?? {};
}

// The alternatives of a (possibly nested) anyOf / oneOf, references resolved.
function alternatives(node) {
  node = resolve(node);
  const union = node.anyOf ?? node.oneOf;
  return union ? union.flatMap(alternatives) : [node];
}

function kindOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function fits(node, value) {
  if ("const" in node && value !== node.const) return false;
  if (node.enum && !node.enum.includes(value)) return false;
  if (node.type === undefined) return true;
  const kind = kindOf(value);
  const types = [].concat(node.type);
  return types.includes(kind) || (kind === "integer" && types.includes("number"));
}

function describe(nodes) {
  return nodes.map((n) => (n.enum ? `one of ${JSON.stringify(n.enum)}` : n.type ?? "any")).join(" or ");
}

function preview(value) {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

// The schema of key `key` of an object of schema `shape`; undefined: the schema has no such key.
// Declared properties are all a script may read, even where others are allowed (a node's
// counters); an object without declared properties is a map.
function member(shape, key) {
  if (shape.properties) return shape.properties[key];
  const extra = shape.additionalProperties;
  if (extra === false) return undefined;
  return extra === undefined || extra === true ? {} : extra;
}

function isIndex(key) {
  return typeof key === "string" && /^(0|[1-9]\d*)$/.test(key);
}

function objectHandler(shape, path) {
  return {
    get(target, key, receiver) {
      const inherited = !Object.hasOwn(target, key) && key in Object.prototype;
      if (typeof key === "symbol" || LANGUAGE_KEYS.has(key) || inherited) {
        return Reflect.get(target, key, receiver);
      }
      const node = member(shape, key);
      if (node === undefined) {
        fail(`${path}.${key}: read, but the schema has no such key`);
        return target[key];
      }
      return Object.hasOwn(target, key) ? wrap(node, target[key], `${path}.${key}`) : undefined;
    },
    has(target, key) {
      if (typeof key === "string" && member(shape, key) === undefined) {
        fail(`${path}.${key}: tested with "in", but the schema has no such key`);
      }
      return Reflect.has(target, key);
    },
  };
}

function arrayHandler(shape, path) {
  return {
    get(target, key, receiver) {
      if (!isIndex(key)) return Reflect.get(target, key, receiver); // length, map, filter, ...
      const i = Number(key);
      if (i >= target.length) return undefined;
      const node = shape.prefixItems?.[i] ?? shape.items ?? {};
      return wrap(node, target[i], `${path}[]`);
    },
  };
}

function wrap(node, value, path) {
  const options = alternatives(node);
  const fitting = options.filter((option) => fits(option, value));
  if (fitting.length === 0) {
    fail(`${path}: expected ${describe(options)}, found ${preview(value)}`);
    return value;
  }
  if (value === null || typeof value !== "object") return value;
  let proxy = wrapped.get(value);
  if (proxy === undefined) {
    const shape = fitting[0]; // these messages have one object (or array) alternative per union
    if (Array.isArray(value)) {
      proxy = new Proxy(value, arrayHandler(shape, path));
    } else {
      for (const key of shape.required ?? []) {
        if (!Object.hasOwn(value, key)) fail(`${path}.${key}: required by the schema, missing`);
      }
      proxy = new Proxy(value, objectHandler(shape, path));
    }
    wrapped.set(value, proxy);
  }
  return proxy;
}

/** `message` (a decoded JSON object) checked as the schema's message `kind` while it is read. */
export function checked(kind, message) {
  if (schema === null) return message;
  const node = schema.messages[kind];
  if (node === undefined) {
    fail(`no message "${kind}" in the schema`);
    return message;
  }
  return wrap(node, message, kind);
}
