// The not-found page needs only what every page does.
import './common.js';
