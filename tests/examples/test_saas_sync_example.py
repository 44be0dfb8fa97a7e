"""examples/saas-sync through a real daemon on RabbitMQ, run from a copy of the example folder,
against its fake Salesforce, HubSpot and Slack.

A person's edit on either side reaches the other side once, mapped; esb's own writes come back
(HubSpot sends a webhook for every change, Salesforce's modstamp moves) and are not synced back,
so nothing bounces; an edit to a field Salesforce owns made in HubSpot is reported to Slack
instead of synced. The Salesforce side is polled with SOQL under an OAuth token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from esbtest.examples import ExampleProject, example_peers, load_fakes, route_cases
from esbtest.waiting import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "saas-sync"
fakes = load_fakes(EXAMPLE)

Systems = tuple[fakes.FakeSalesforce, fakes.FakeHubSpot, fakes.FakeSlack]


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory, rabbit_url: str,
        ) -> Iterator[tuple[ExampleProject, Systems]]:
    sf, hs, slack = fakes.seeded()
    apps = {"salesforce": (sf.app(), False), "hubspot": (hs.app(), False),
            "slack": (slack.app(), False)}
    with example_peers(apps) as urls:
        env = {"SF_INSTANCE_URL": urls["salesforce"], "HUBSPOT_API": urls["hubspot"],
               "SLACK_WEBHOOK_URL": urls["slack"] + fakes.SLACK_PATH,
               "SF_POLL_INTERVAL": "300ms"}
        with ExampleProject(EXAMPLE, tmp_path_factory.mktemp("saas"), rabbit_url,
                            ("hubspot", "salesforce", "slack"), env) as project:
            hs.webhook_url = project.daemon.url + "/hooks/hubspot"
            yield project, (sf, hs, slack)


def settled(sf: fakes.FakeSalesforce, hs: fakes.FakeHubSpot, slack: fakes.FakeSlack,
            quiet: float = 2.0) -> tuple[int, int, int]:
    """The write counts once nothing moved for ``quiet`` seconds (several poll intervals and
    webhook round trips): a loop would keep them moving."""
    last, since = None, time.monotonic()
    deadline = since + 30
    while time.monotonic() < deadline:
        now = (len(sf.api_writes), len(hs.api_writes), len(slack.messages))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
        time.sleep(0.1)
    raise AssertionError(f"writes never settled: {last}")


def test_the_route_files_own_cases_pass() -> None:
    result = route_cases(EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 case(s): 4 passed, 0 failed" in result.stdout


def test_changes_flow_both_ways_once_and_conflicts_reach_slack(
        crm: tuple[ExampleProject, Systems]) -> None:
    project, (sf, hs, slack) = crm
    # The first poll reads both seeded contacts and upserts them into HubSpot; HubSpot has
    # the same values, so nothing changes there and no webhook follows.
    assert wait_until(lambda: len(hs.api_writes) == 2, 30), project.daemon.log()
    assert settled(sf, hs, slack) == (0, 2, 0)
    assert sf.queries[0].endswith("ORDER BY SystemModstamp ASC LIMIT 200")
    assert "LastModifiedById != '0055g00000EsbSyn'" in sf.queries[0]
    assert sf.tokens_issued == 1  # the OAuth token is cached across polls

    # A person edits Salesforce: HubSpot gets the mapped change; HubSpot's webhook for it
    # (changeSource INTEGRATION, esb's app) is not synced back to Salesforce.
    sf.human_edit("0035g00000AdaLov", Title="CTO")
    assert wait_until(lambda: hs.contacts["501"]["properties"]["jobtitle"] == "CTO", 30)
    assert wait_until(lambda: any(s == 202 and e[0]["changeSource"] == "INTEGRATION"
                                  for s, e in hs.deliveries), 30), hs.deliveries
    assert settled(sf, hs, slack) == (0, 3, 0)

    # A person edits HubSpot: Salesforce gets the mapped field, under the integration user,
    # which the SOQL filter leaves out of the next polls: nothing comes back to HubSpot.
    hs.user_edit("502", phone="+1 217 555 0199")
    assert wait_until(lambda: sf.contacts["0035g00000GraHop"]["Phone"] == "+1 217 555 0199",
                      30), project.daemon.log()
    assert sf.api_writes == [{"HubSpot_Id__c": "502", "Phone": "+1 217 555 0199"}]
    assert sf.contacts["0035g00000GraHop"]["LastModifiedById"] == fakes.SF_INTEGRATION_USER
    assert settled(sf, hs, slack) == (1, 3, 0)

    # A person changes the email (owned by Salesforce) in HubSpot: a conflict for Slack, no
    # write to Salesforce.
    hs.user_edit("501", email="ada.l@example.org")
    assert wait_until(lambda: len(slack.messages) == 1, 30), project.daemon.log()
    assert "contact 501: `email` changed to `ada.l@example.org`" in slack.messages[0]["text"]
    assert settled(sf, hs, slack) == (1, 3, 1)
    assert sf.contacts["0035g00000AdaLov"]["Email"] == "ada@example.com"
