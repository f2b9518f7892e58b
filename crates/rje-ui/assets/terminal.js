// Turns a command's output into lines the page can show: ANSI colours
// (SGR) kept as classes, other escape sequences removed, and carriage
// returns overwriting the line as a terminal would.

// CSI ... final byte, OSC ... BEL/ST, or a lone two-byte escape.
const ESCAPE = /\x1b(?:\[([0-?]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;

/** Applies `\r` overwrites: each segment writes over the line from column 0. */
export function overwrite(line) {
  if (!line.includes('\r')) return line;
  let shown = '';
  for (const part of line.split('\r')) {
    shown = part + shown.slice(part.length);
  }
  return shown;
}

/** SGR state of one stream, carried from line to line as a terminal does. */
export class Style {
  constructor() { this.reset(); }

  reset() {
    this.fg = null; this.bg = null;
    this.bold = false; this.dim = false; this.italic = false; this.underline = false;
  }

  apply(params) {
    const codes = params === '' ? [0] : params.split(';').map((p) => parseInt(p || '0', 10));
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) this.reset();
      else if (c === 1) this.bold = true;
      else if (c === 2) this.dim = true;
      else if (c === 3) this.italic = true;
      else if (c === 4) this.underline = true;
      else if (c === 22) { this.bold = false; this.dim = false; }
      else if (c === 23) this.italic = false;
      else if (c === 24) this.underline = false;
      else if (c >= 30 && c <= 37) this.fg = c - 30;
      else if (c >= 90 && c <= 97) this.fg = c - 90 + 8;
      else if (c === 39) this.fg = null;
      else if (c >= 40 && c <= 47) this.bg = c - 40;
      else if (c >= 100 && c <= 107) this.bg = c - 100 + 8;
      else if (c === 49) this.bg = null;
      else if (c === 38 || c === 48) {
        let colour = null;
        if (codes[i + 1] === 5 && i + 2 < codes.length) {
          colour = xterm256(codes[i + 2]);
          i += 2;
        } else if (codes[i + 1] === 2 && i + 4 < codes.length) {
          colour = `rgb(${codes[i + 2]},${codes[i + 3]},${codes[i + 4]})`;
          i += 4;
        }
        if (c === 38) this.fg = colour; else this.bg = colour;
      }
    }
  }

  /** The segment's look: classes for the 16 colours, a colour value beyond. */
  snapshot() {
    const classes = [];
    let color = null;
    let background = null;
    if (typeof this.fg === 'number') classes.push('f' + this.fg); else color = this.fg;
    if (typeof this.bg === 'number') classes.push('b' + this.bg); else background = this.bg;
    if (this.bold) classes.push('bold');
    if (this.dim) classes.push('dim');
    if (this.italic) classes.push('italic');
    if (this.underline) classes.push('underline');
    return { cls: classes.join(' '), color, background };
  }
}

function xterm256(n) {
  if (!(n >= 0 && n <= 255)) return null;
  const base = ['#000', '#c33', '#3a3', '#c90', '#36c', '#a3a', '#3aa', '#ccc',
    '#666', '#f55', '#5d5', '#fd5', '#68f', '#f6f', '#5ee', '#fff'];
  if (n < 16) return base[n];
  if (n >= 232) { const v = 8 + (n - 232) * 10; return `rgb(${v},${v},${v})`; }
  const i = n - 16;
  const step = (v) => (v === 0 ? 0 : 55 + v * 40);
  return `rgb(${step(Math.floor(i / 36))},${step(Math.floor(i / 6) % 6)},${step(i % 6)})`;
}

/**
 * One line of output as styled segments: [{text, cls, color, background}].
 * `style` is updated in place for the lines that follow.
 */
export function segments(line, style) {
  const out = [];
  let last = 0;
  const text = overwrite(line);
  let plain = true;
  ESCAPE.lastIndex = 0;
  for (let m = ESCAPE.exec(text); m; m = ESCAPE.exec(text)) {
    plain = false;
    if (m.index > last) out.push({ text: text.slice(last, m.index), ...style.snapshot() });
    if (m[2] === 'm') style.apply(m[1]);
    last = ESCAPE.lastIndex;
  }
  if (plain) return [{ text, ...style.snapshot() }];
  if (last < text.length) out.push({ text: text.slice(last), ...style.snapshot() });
  return out;
}

/** A line's element: plain text where it can, spans where colours change. */
export function lineElement(parts, stream) {
  const div = document.createElement('div');
  div.className = 'ln ' + (stream === 'stderr' ? 'err' : 'out');
  if (parts.length === 1 && !parts[0].cls && !parts[0].color && !parts[0].background) {
    div.textContent = parts[0].text || '\u200b';
    return div;
  }
  for (const part of parts) {
    if (!part.text) continue;
    const span = document.createElement('span');
    span.textContent = part.text;
    if (part.cls) span.className = part.cls;
    // Set through the CSSOM, which the page's content policy allows.
    if (part.color) span.style.color = part.color;
    if (part.background) span.style.backgroundColor = part.background;
    div.append(span);
  }
  if (!div.firstChild) div.textContent = '\u200b';
  return div;
}
