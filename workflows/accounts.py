"""Account set-up as a workflow: id ``account/<account_id>/create``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.accounts import AccountActivities, StripeCustomerInput


@dataclass
class AccountSetupInput:
    account_id: str


@dataclass
class AccountSetupOutput:
    stripe_customer_id: str


def account_setup_workflow_id(account_id: str) -> str:
    """The readable workflow id of an account's set-up."""
    return f"account/{account_id}/create"


@workflow.defn(name="AccountSetupWorkflow")
class AccountSetupWorkflow:
    """Creates the account's Stripe customer once, however often the worker crashes or the activity retries."""

    @workflow.run
    async def run(self, params: AccountSetupInput) -> AccountSetupOutput:
        result = await workflow.execute_activity_method(
            AccountActivities.ensure_stripe_customer,
            StripeCustomerInput(params.account_id),
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=20),
        )
        return AccountSetupOutput(result.customer_id)
