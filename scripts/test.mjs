// Runs the test suite with vitest and ends with the plain line `N passed, N failed, N skipped`
// (read from vitest's JSON report), exiting non-zero on any failure.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, existsSync, rmSync } from 'node:fs';

const report = '.cache/vitest-report.json';
mkdirSync('.cache', { recursive: true });
if (existsSync(report)) rmSync(report);
const args = ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)];
const r = spawnSync('npx', args, { stdio: 'inherit' });
if (!existsSync(report)) {
  console.log('0 passed, 1 failed');
  console.error(`vitest wrote no report (exit ${r.status}); see the output above`);
  process.exit(1);
}
const j = JSON.parse(readFileSync(report, 'utf8'));
const passed = j.numPassedTests ?? 0;
// a test file that failed without a failing test (it did not load, or a hook threw) counts once; vitest's
// numFailedTestSuites also counts every describe block around a failing test, which would count that test again
const brokenFiles = (j.testResults ?? []).filter((f) => f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed')).length;
const failed = (j.numFailedTests ?? 0) + brokenFiles;
const skipped = (j.numPendingTests ?? 0) + (j.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || r.status !== 0 ? 1 : 0);
