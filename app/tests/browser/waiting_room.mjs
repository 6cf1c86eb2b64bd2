// Drives the waiting-room page in headless Chromium (Debian's /usr/bin/chromium) for
// app/tests/queue_browser.rs: sign up and join, see position / people ahead / ETA, get
// admitted, hold a seat, top up the wallet and pay. Prints WAITING {...} once the place is
// shown (the Rust test then speeds admission up) and DONE at the end; screenshots go to
// the directory given.
//
//   node waiting_room.mjs <base url> <screenshot dir> <email>
import { chromium } from 'playwright-core';

const [base, outDir, email] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const page = await browser.newPage({ viewport: { width: 800, height: 900 } });
try {
  page.on('console', (m) => console.error('[page]', m.text(), JSON.stringify(m.location())));
page.on('response', (r) => { if (r.status() >= 400) console.error('[http]', r.status(), r.url()); });
  const external = [];
  page.on('request', (r) => { if (!r.url().startsWith(base)) external.push(r.url()); });
  await page.goto(`${base}/waiting-room/concert-42`);

  // the form is reachable by its accessible names
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Create account and join' }).click();

  await page.locator('#waiting').waitFor({ state: 'visible' });
  await page.waitForFunction(() => {
    const ahead = Number(document.getElementById('ahead').textContent);
    return ahead >= 1 && document.getElementById('eta').textContent.trim() !== '–';
  }, null, { timeout: 15000 });
  const shown = {
    position: (await page.textContent('#position')).trim(),
    ahead: (await page.textContent('#ahead')).trim(),
    eta: (await page.textContent('#eta')).trim(),
    status: (await page.textContent('#message')).trim(),
  };
  await page.screenshot({ path: `${outDir}/waiting-room-waiting.png`, fullPage: true });
  console.log('WAITING ' + JSON.stringify(shown));

  // admitted: the page moves on to choosing a seat without any click
  await page.locator('#admitted').waitFor({ state: 'visible', timeout: 45000 });
  await page.locator('button.schedule').first().waitFor({ timeout: 10000 });
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  console.log('ADMITTED ' + JSON.stringify({ focused }));
  await page.locator('button.schedule').first().click();
  await page.locator('button.seat').first().waitFor({ timeout: 10000 });
  await page.screenshot({ path: `${outDir}/waiting-room-admitted.png`, fullPage: true });

  await page.locator('button.seat').first().click();
  await page.locator('#hold').waitFor({ state: 'visible', timeout: 10000 });
  await page.getByRole('button', { name: 'Pay' }).click();
  // a brand-new account has an empty wallet
  await page.locator('#topup-button').waitFor({ state: 'visible', timeout: 10000 });
  await page.locator('#topup-button').click();
  await page.locator('#done').waitFor({ state: 'visible', timeout: 10000 });
  await page.screenshot({ path: `${outDir}/waiting-room-done.png`, fullPage: true });
  if (external.length) throw new Error('external requests: ' + external.join(', '));
  console.log('DONE');
} catch (e) {
  // leave evidence for whoever reads the failure
  await page.screenshot({ path: `${outDir}/waiting-room-failure.png`, fullPage: true }).catch(() => {});
  console.error('page state:', await page.evaluate(() => document.querySelector('main').innerText).catch(() => '?'));
  throw e;
} finally {
  await browser.close();
}
