// A step's config form, generated from its step type's config JSON Schema
// (draft 2020-12, as GET /api/v2/steps/types gives it). Scalars get their
// own control (text, number, checkbox, a select for enums); objects,
// arrays and unions get a JSON editor. Text and number fields accept
// `${...}` variables, offered from a datalist. Each field carries its JSON
// path (`steps[0].config.url`) so validation errors land at it.

import { field, h } from './dom.js';

/** Follows a local `$ref` (`#/$defs/Name`). */
function resolve(root, schema) {
  let s = schema ?? {};
  for (let i = 0; i < 8 && s.$ref; i += 1) {
    const parts = s.$ref.replace(/^#\//, '').split('/');
    let target = root;
    for (const p of parts) target = target?.[p];
    s = { ...(target ?? {}), ...Object.fromEntries(Object.entries(s).filter(([k]) => k !== '$ref')) };
  }
  return s;
}

/**
 * What control a property gets: { kind: 'text' | 'number' | 'bool' |
 * 'enum' | 'json', options?, nullable }.
 */
export function controlKind(root, schema) {
  let s = resolve(root, schema);
  let nullable = false;
  // `anyOf: [X, {type: null}]` is an optional X.
  const union = s.anyOf ?? s.oneOf;
  if (union) {
    const nonNull = union.filter((u) => resolve(root, u).type !== 'null');
    nullable = nonNull.length < union.length;
    if (nonNull.length === 1) s = { ...resolve(root, nonNull[0]), description: s.description, default: s.default };
    else if (nonNull.every((u) => resolve(root, u).const !== undefined)) {
      return { kind: 'enum', options: nonNull.map((u) => resolve(root, u).const), nullable };
    } else return { kind: 'json', nullable };
  }
  if (Array.isArray(s.enum)) return { kind: 'enum', options: s.enum.filter((v) => v !== null), nullable };
  const rep = s.oneOf ?? s.anyOf;
  if (rep && rep.every((u) => resolve(root, u).const !== undefined)) {
    return { kind: 'enum', options: rep.map((u) => resolve(root, u).const), nullable };
  }
  let types = Array.isArray(s.type) ? s.type : [s.type];
  if (types.includes('null')) nullable = true;
  types = types.filter((t) => t && t !== 'null');
  if (types.length === 1) {
    if (types[0] === 'string') return { kind: 'text', nullable };
    if (types[0] === 'integer' || types[0] === 'number') return { kind: 'number', integer: types[0] === 'integer', nullable };
    if (types[0] === 'boolean') return { kind: 'bool', nullable };
  }
  return { kind: 'json', nullable };
}

/** Names whose string values are long text (SQL, bodies, scripts). */
const LONG_TEXT = /^(query|body|script|sql|command|template)$/;

/**
 * The config form of one step.
 * - schema: the step type's config schema
 * - config: the step's config object (changed in place)
 * - path: the JSON path prefix (`steps[0].config`)
 * - onChange(): after every change
 * - readOnly: viewers see the form but cannot change it
 * - varsList: the id of a <datalist> of `${...}` names
 */
export function schemaForm({ schema, config, path, onChange, readOnly, varsList }) {
  const props = schema?.properties ?? {};
  const required = new Set(schema?.required ?? []);
  const names = Object.keys(props).sort((a, b) => Number(required.has(b)) - Number(required.has(a)));
  const fields = names.map((name) => {
    const prop = resolve(schema, props[name]);
    const kind = controlKind(schema, props[name]);
    const value = config[name];
    const fieldPath = `${path}.${name}`;
    const set = (v) => {
      if (v === undefined) delete config[name];
      else config[name] = v;
      onChange();
    };
    const description = (prop.description ?? props[name].description ?? '').split('\n').join(' ');
    const dflt = prop.default ?? props[name].default;
    const hint = [description, dflt !== undefined && dflt !== null ? `Default: ${JSON.stringify(dflt)}.` : '']
      .filter(Boolean).join(' ');
    let control;
    if (kind.kind === 'bool') {
      control = h('input', { type: 'checkbox', checked: value === true, disabled: readOnly, onchange: (e) => set(e.target.checked ? true : (dflt === true ? false : undefined)) });
      const f = field(name, control, { hint, path: fieldPath, required: required.has(name) });
      f.classList.add('check');
      return f;
    }
    if (kind.kind === 'enum') {
      control = h('select', { disabled: readOnly, onchange: (e) => set(e.target.value === '' ? undefined : JSON.parse(e.target.value)) },
        h('option', { value: '' }, dflt !== undefined && dflt !== null ? `(default: ${dflt})` : '(none)'),
        kind.options.map((o) => h('option', { value: JSON.stringify(o), selected: value === o ? 'selected' : null }, String(o))));
      if (value !== undefined) control.value = JSON.stringify(value);
    } else if (kind.kind === 'text' && LONG_TEXT.test(name)) {
      control = h('textarea', { rows: 3, readOnly, spellcheck: 'false', oninput: (e) => set(e.target.value === '' ? undefined : e.target.value) });
      control.value = typeof value === 'string' ? value : value === undefined ? '' : JSON.stringify(value);
    } else if (kind.kind === 'text' || kind.kind === 'number') {
      control = h('input', {
        type: 'text',
        inputmode: kind.kind === 'number' ? 'numeric' : null,
        list: varsList,
        readOnly,
        spellcheck: 'false',
        autocomplete: 'off',
        placeholder: dflt !== undefined && dflt !== null ? String(dflt) : null,
        oninput: (e) => {
          const raw = e.target.value;
          if (raw === '') return set(undefined);
          // A number field keeps numbers as numbers; a `${...}` stays text.
          if (kind.kind === 'number' && /^-?\d+(\.\d+)?$/.test(raw.trim())) return set(Number(raw.trim()));
          return set(raw);
        },
      });
      control.value = value === undefined || value === null ? '' : String(value);
    } else {
      control = h('textarea', {
        rows: 2,
        readOnly,
        spellcheck: 'false',
        placeholder: 'JSON',
        oninput: (e) => {
          const raw = e.target.value.trim();
          const err = e.target.parentElement.querySelector('.field-error');
          if (raw === '') {
            e.target.removeAttribute('aria-invalid');
            err.hidden = true;
            return set(undefined);
          }
          try {
            const parsed = JSON.parse(raw);
            e.target.removeAttribute('aria-invalid');
            err.hidden = true;
            set(parsed);
          } catch (x) {
            e.target.setAttribute('aria-invalid', 'true');
            err.textContent = `Not JSON yet: ${x.message}`;
            err.hidden = false;
          }
        },
      });
      control.value = value === undefined ? '' : JSON.stringify(value, null, 1);
    }
    const f = field(name, control, { hint, path: fieldPath, required: required.has(name) });
    // Long values (URLs, SQL, JSON) get the whole row.
    if (kind.kind === 'text') f.classList.add('wide');
    return f;
  });
  const req = fields.filter((_, i) => required.has(names[i]));
  const opt = fields.filter((_, i) => !required.has(names[i]));
  const setOptional = names.some((n) => !required.has(n) && config[n] !== undefined);
  return h('div', { class: 'config', 'data-path': path },
    h('div', { class: 'grid' }, req),
    opt.length
      ? h('details', { open: setOptional ? true : null },
        h('summary', {}, `More settings (${opt.length})`),
        h('div', { class: 'grid' }, opt))
      : null);
}
