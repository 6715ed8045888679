// rnn ops: see registry.ts for the entry shape.
import { register } from './registry.js';

register();
